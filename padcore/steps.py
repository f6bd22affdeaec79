"""The step functions: one per pipeline step, file-in/file-out.

The CLI verb, the KFP component and the container entrypoint all call these.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from padcore.dataset import Protocol, build_dataset, summary, write_dataset

# steps that need torch are imported on first use, so `pad preprocess` and `pad --help` stay light
_LAZY = {"analyze": "padcore.analysis", "compare": "padcore.compare", "publish": "padcore.store",
         "recommend": "padcore.recommend"}

__all__ = ["preprocess", "embed", "embed_merge", "pretrain", "align", "finetune", "train", "analyze", "compare",
           "publish", "recommend"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preprocess(source: str, out: str | Path, *, max_len: int = 20, min_len: int = 5, buckets: int = 10,
               as_of: str = "", fingerprint: str = "") -> dict:
    """Raw source -> dataset artifact at `out`. Returns the artifact's meta.

    `as_of` (an ISO 8601 time, or a number for numeric timestamps; "" = no bound) keeps
    the interactions up to then and, for `files:`, the dated partitions up to its date.
    `fingerprint`: the source's `padcore.sources.fingerprint` when the run began (the
    pipeline's cache key for this step); the one of what was read is recorded beside it.
    """
    from padcore.sources import fingerprint as source_fingerprint
    from padcore.sources import load_source

    t0 = time.perf_counter()
    protocol = Protocol.from_options(max_len=max_len, min_len=min_len, buckets=buckets)
    print(f"[preprocess] reading {source}{f' as of {as_of}' if as_of else ''} ...", flush=True)
    read = source_fingerprint(source, as_of)["fingerprint"]
    if fingerprint and fingerprint != read:
        print(f"[preprocess] the source changed since the run's fingerprint step ({fingerprint[:12]}); reading "
              f"it as it is now ({read[:12]})", flush=True)
    raw = load_source(source, as_of or None)
    print(f"[preprocess] {len(raw.interactions):,} interactions, {len(raw.items):,} items read; applying protocol", flush=True)
    ds = build_dataset(raw, protocol, as_of or None)
    ds.meta["source_fingerprint"] = read
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
    shard: str = "",
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


def _check_training(model: str, stage: str | None, options: dict) -> None:
    """Every training option checked before any data is read (`stage` None: the model's first).

    A first stage's configuration is checked whole; a later stage's builds on its
    earlier stage's, so each option is checked on its own here, and the whole once
    that is read. The model's own options (its spec's dataclass) are checked too.
    """
    import dataclasses

    from padcore.config import TrainConfig
    from padcore.options import check_values
    from padcore.registry import MODELS

    spec = MODELS[model]
    st = spec.stage(stage) if stage else spec.stages[0]
    own = {f.name for f in dataclasses.fields(spec.options)} if spec.options else set()
    training = {k: v for k, v in options.items() if k not in own}
    if st.needs:
        check_values(TrainConfig, "training", training)
    else:
        TrainConfig.from_options(dict(st.defaults), **training)
    if own:
        check_values(spec.options, spec.name, {k: v for k, v in options.items() if k in own})


def pretrain(dataset: str | Path, out: str | Path, **options) -> dict:
    """PAD phase 1 (`padcore.training.pretrain`): dataset -> ID model artifact at `out`. Returns its metrics."""
    from padcore import training

    _check_training("id", "pretrain", options)
    return training.pretrain(dataset, out, **options)


def align(dataset: str | Path, text: str | Path, id_model: str | Path, out: str | Path, **options) -> dict:
    """PAD phase 2 (`padcore.training.align`): -> alignment-expert artifact at `out`. Returns its metrics."""
    from padcore import training

    _check_training("pad", "align", options)
    return training.align(dataset, text, id_model, out, **options)


def finetune(dataset: str | Path, text: str | Path, id_model: str | Path, align_model: str | Path, out: str | Path,
             **options) -> dict:
    """PAD phase 3 (`padcore.training.finetune`): -> the fused experts' model artifact at `out`. Returns its metrics."""
    from padcore import training

    _check_training("pad", "finetune", options)
    return training.finetune(dataset, text, id_model, align_model, out, **options)


def train(model: str, dataset: str | Path, text: str | Path | None, out: str | Path,
          parents: dict[str, str | Path] | None = None, reuse: dict[str, str | Path] | None = None,
          **options) -> dict:
    """Every stage of a registered model (`padcore.training.train`) -> its model artifact at `out`."""
    from padcore import training

    _check_training(model, None, options)
    return training.train(model, dataset, text, out, parents=parents, reuse=reuse, **options)
