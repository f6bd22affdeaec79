"""Component: any registered model, e.g. a baseline of the paper's Table 2 (`padcore.steps.train`)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("gpu")
def train(
    dataset: Input[Dataset],
    text: Input[Dataset],
    id_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    results: Output[Markdown],
    plots: Output[HTML],
    name: str,
    backbone: str = "sasrec",
    loss: str = "bce",
    epochs: int = 0,
    seed: int = 0,
    device: str = "auto",
    options: dict = {},
    checkpoint_root: str = "",
) -> None:
    """Train the registered model `name` (`pad train --list`) with the run's training settings.

    A model that starts from an ID model (Hybrid, DisCo, SMEM) takes the run's phase-1
    model (`id_model`) instead of training its own. `options` = more training fields.
    """
    from components.base import training_options, work_folder
    from components.reports import publish_training
    from padcore.steps import train as step

    opts = training_options(options, backbone=backbone, loss=loss, epochs=epochs, seed=seed, device=device)
    with work_folder(model.path, checkpoint_root, f"train-{name}") as out:
        step(name, dataset.path, text.path, out, reuse={"pretrain": id_model.path}, **opts)
    model.metadata.update({"model": name, "backbone": backbone, "loss": loss})
    publish_training(dataset.path, [id_model.path, model.path], metrics, results, plots)
