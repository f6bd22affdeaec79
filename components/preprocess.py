"""Component: raw source -> dataset artifact (`padcore.steps.preprocess`)."""

from typing import List

from kfp.dsl import Dataset, Markdown, Metrics, Output

from components.base import pad_component


@pad_component("cpu")
def preprocess(
    source: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    max_len: int = 20,
    min_len: int = 5,
    buckets: int = 10,
    embed_shards: int = 1,
) -> List[str]:
    """Apply the paper's protocol to `source`; return the shard names the embedding fans out over."""
    from components.base import shard_specs
    from components.reports import log_metrics, write_text
    from padcore.dataset import load_dataset
    from padcore.dataset import summary as dataset_summary
    from padcore.steps import preprocess as step

    shards = shard_specs(embed_shards)
    meta = step(source, dataset.path, max_len=max_len, min_len=min_len, buckets=buckets)
    dataset.metadata.update({k: meta[k] for k in ("source", "dataset_id", "item_hash", "n_users", "n_items")})
    log_metrics(metrics, {k: meta[k] for k in ("n_users", "n_items", "n_interactions")})
    write_text(summary, f"### Dataset `{meta['source']}`\n\n```\n{dataset_summary(load_dataset(dataset.path))}\n```\n")
    return shards
