"""Component: phase 3, PAD's experts fused by the frequency-aware gate (`padcore.steps.finetune`)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("gpu")
def finetune(
    dataset: Input[Dataset],
    text: Input[Dataset],
    id_model: Input[Model],
    align_model: Input[Model],
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
    """Train the tuned-similarity expert, then fuse it with the ID, alignment, LLM and text-similarity experts by
    the frequency-aware gate; report them against the backbone."""
    from components.base import training_options, work_folder
    from components.reports import publish_training
    from padcore.steps import finetune as step

    opts = training_options(options, backbone=backbone, loss=loss, epochs=epochs, seed=seed, device=device)
    with work_folder(model.path, checkpoint_root, "finetune") as out:
        step(dataset.path, text.path, id_model.path, align_model.path, out, **opts)
    model.metadata.update({"phase": "finetune", "backbone": backbone, "loss": loss})
    publish_training(dataset.path, [id_model.path, align_model.path, model.path], metrics, results, plots)
