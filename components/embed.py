"""Component: item texts -> text-embedding artifact, or one shard of it (`padcore.steps.embed`)."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components.base import pad_component


@pad_component("llm2vec")
def embed(
    dataset: Input[Dataset],
    text: Output[Dataset],
    metrics: Output[Metrics],
    encoder: str = "minilm",
    shard: str = "",
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float16",
    checkpoint_root: str = "",
) -> None:
    """Embed every item text of `dataset` (or shard `I/N` of them) with `encoder`."""
    from components.base import work_folder
    from components.reports import log_metrics
    from padcore.steps import embed as step

    name = "embed" + (f"-{shard.replace('/', 'of')}" if shard else "")
    with work_folder(text.path, checkpoint_root, name) as out:
        meta = step(dataset.path, out, encoder=encoder, batch_size=batch_size, device=device, dtype=dtype, shard=shard)
    text.metadata.update({k: meta[k] for k in ("encoder", "model", "dim", "dtype") if k in meta})
    log_metrics(metrics, {k: meta[k] for k in ("dim", "items", "empty_texts", "items_per_second", "wall_seconds") if k in meta})
