"""Component: phase 1, the ID backbone (`padcore.steps.pretrain`)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("gpu")
def pretrain(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    results: Output[Markdown],
    plots: Output[HTML],
    backbone: str = "sasrec",
    loss: str = "bce",
    epochs: int = 0,
    seed: int = 0,
    device: str = "auto",
    options: dict = {},
    checkpoint_root: str = "",
) -> None:
    """Train the backbone on item IDs; `epochs` 0 = the step's default, `options` = more config fields."""
    from components.base import training_options, work_folder
    from components.reports import publish_training
    from padcore.steps import pretrain as step

    opts = training_options(options, backbone=backbone, loss=loss, epochs=epochs, seed=seed, device=device)
    with work_folder(model.path, checkpoint_root, "pretrain") as out:
        step(dataset.path, out, **opts)
    model.metadata.update({"phase": "pretrain", "backbone": backbone, "loss": loss})
    publish_training(dataset.path, [model.path], metrics, results, plots)
