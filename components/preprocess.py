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
    as_of: str = "",
    fingerprint: str = "",
) -> List[str]:
    """Apply the paper's protocol to `source`; return the shard names the embedding fans out over.

    Args:
        as_of: keep the interactions up to this time (ISO 8601), and for `files:` the partitions up to its date.
        fingerprint: the source's data when the run began (the fingerprint step's): it keys KFP's cache, so
            this step is answered from the cache only for unchanged data.
    """
    from components.base import shard_specs
    from components.reports import log_metrics, write_text
    from padcore.dataset import load_dataset
    from padcore.dataset import summary as dataset_summary
    from padcore.steps import preprocess as step

    shards = shard_specs(embed_shards)
    meta = step(source, dataset.path, max_len=max_len, min_len=min_len, buckets=buckets, as_of=as_of, fingerprint=fingerprint)
    dataset.metadata.update({k: meta[k] for k in ("source", "dataset_id", "item_hash", "n_users", "n_items")})
    dataset.metadata["as_of"] = meta.get("as_of") or ""
    dataset.metadata["source_fingerprint"] = meta["source_fingerprint"]
    log_metrics(metrics, {k: meta[k] for k in ("n_users", "n_items", "n_interactions")})
    write_text(summary, f"### Dataset `{meta['source']}`\n\n```\n{dataset_summary(load_dataset(dataset.path))}\n```\n")
    return shards
