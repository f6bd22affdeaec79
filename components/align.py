"""Component: phase 2, the rec-anchored alignment expert (`padcore.steps.align`)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("gpu")
def align(
    dataset: Input[Dataset],
    text: Input[Dataset],
    id_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    results: Output[Markdown],
    plots: Output[HTML],
    backbone: str = "sasrec",
    loss: str = "bce",
    epochs: int = 0,
    gamma: float = 0.2,
    seed: int = 0,
    device: str = "auto",
    options: dict = {},
    checkpoint_root: str = "",
) -> None:
    """Align the frozen text embeddings with the phase-1 ID space under L_REC + gamma MK-MMD."""
    from components.base import training_options, work_folder
    from components.reports import publish_training
    from padcore.steps import align as step

    opts = training_options(options, backbone=backbone, loss=loss, epochs=epochs, gamma=gamma, seed=seed, device=device)
    with work_folder(model.path, checkpoint_root, "align") as out:
        step(dataset.path, text.path, id_model.path, out, **opts)
    model.metadata.update({"phase": "align", "backbone": backbone, "loss": loss, "gamma": gamma})
    publish_training(dataset.path, [id_model.path, model.path], metrics, results, plots)
