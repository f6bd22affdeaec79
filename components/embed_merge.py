"""Component: embedding shards -> one text-embedding artifact (`padcore.steps.embed_merge`)."""

from typing import List

from kfp.dsl import Dataset, Input, Metrics, Output

from components.base import pad_component


@pad_component("cpu")
def embed_merge(parts: Input[List[Dataset]], text: Output[Dataset], metrics: Output[Metrics]) -> None:
    """Join the shards, checking that no item is missing or doubled."""
    from components.reports import log_metrics
    from padcore.steps import embed_merge as step

    meta = step([part.path for part in parts], text.path)
    text.metadata.update({k: meta[k] for k in ("encoder", "model", "dim", "dtype") if k in meta})
    log_metrics(metrics, {"shards": len(parts), **{k: meta[k] for k in ("dim", "items") if k in meta}})
