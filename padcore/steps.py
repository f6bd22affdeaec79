"""The step functions: one per pipeline step, file-in/file-out.

The CLI verb, the KFP component and the container entrypoint all call these.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from padcore.dataset import Protocol, build_dataset, summary, write_dataset

# steps that need torch are imported on first use, so `pad preprocess` and `pad --help` stay light
_LAZY = {"pretrain": "padcore.training", "align": "padcore.training", "finetune": "padcore.training",
         "train": "padcore.training", "analyze": "padcore.analysis", "compare": "padcore.compare",
         "publish": "padcore.store", "recommend": "padcore.recommend"}

__all__ = ["preprocess", "embed", "embed_merge", "pretrain", "align", "finetune", "train", "analyze", "compare",
           "publish", "recommend"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preprocess(source: str, out: str | Path, *, max_len: int = 20, min_len: int = 5, buckets: int = 10,
               as_of: str = "") -> dict:
    """Raw source -> dataset artifact at `out`. Returns the artifact's meta.

    `as_of` (an ISO 8601 time, or a number for numeric timestamps; "" = no bound) keeps
    the interactions up to then and, for `files:`, the dated partitions up to its date.
    """
    from padcore.sources import load_source

    t0 = time.perf_counter()
    protocol = Protocol(max_len=max_len, min_len=min_len, buckets=buckets)
    print(f"[preprocess] reading {source}{f' as of {as_of}' if as_of else ''} ...", flush=True)
    raw = load_source(source, as_of or None)
    print(f"[preprocess] {len(raw.interactions):,} interactions, {len(raw.items):,} items read; applying protocol", flush=True)
    ds = build_dataset(raw, protocol, as_of or None)
    write_dataset(ds, out)
    print(summary(ds))
    print(f"[preprocess] wrote {out} in {time.perf_counter() - t0:.1f}s")
    return ds.meta


def embed(
    dataset: str | Path,
    out: str | Path,
    *,
    encoder: str = "minilm",
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float16",
    shard: str | None = None,
    on_empty: str = "placeholder",
    placeholder: str = "(no text)",
    cache: bool = True,
    **options,
) -> dict:
    """Dataset artifact -> text artifact (or shard `I/N` of it) at `out`. Returns its meta.

    `**options` are `padcore.encoders.EncoderOptions` fields: base_model, adapter,
    pooling, max_length, instruction.
    """
    from padcore.encoders import EncoderOptions
    from padcore.text import EmbedConfig, embed_dataset

    cfg = EmbedConfig(encoder, batch_size, device, dtype, shard, on_empty, placeholder, cache, EncoderOptions.from_dict(options))
    return embed_dataset(dataset, out, cfg)


def embed_merge(parts: list, out: str | Path, *, cache: bool = True) -> dict:
    """Text-artifact shards (all N of one table) -> the whole text artifact at `out`. Returns its meta."""
    from padcore.text import merge_shards

    return merge_shards(parts, out, cache=cache)
