"""The three PAD phases as step functions: pretrain, align, finetune.

Each reads its input artifacts, trains with `trainer.fit`, evaluates the best
checkpoint on the validation and test splits, and writes a model artifact.
Rerunning a phase with the same `out` after an interruption resumes it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from padcore.artifacts import resumable_dir
from padcore.batches import split_tensors
from padcore.checkpoint import load_weights, read_model_meta, save_model
from padcore.config import PHASE_LR, TrainConfig
from padcore.dataset import Dataset, load_dataset
from padcore.errors import PadError
from padcore.experts import PadModel, build_model
from padcore.losses import alignment_loss
from padcore.metrics import full_ranking_metrics
from padcore.trainer import RESUME, ExtraLoss, fit, pick_device, rank_split

# fields that fix the shape of the weights: later phases must keep the earlier phase's values
ARCH_FIELDS = ("backbone", "dim", "layers", "heads", "max_len", "caser_window", "text_hidden")


def pretrain(dataset: str | Path, out: str | Path, **options: Any) -> dict:
    """Phase 1: the backbone on item IDs only."""
    ds = load_dataset(dataset)
    cfg = TrainConfig.from_options(**options)
    return _run_phase("pretrain", ds, out, cfg, ("id",), text=None, text_meta=None, parents={})


def align(dataset: str | Path, text: str | Path, id_model: str | Path, out: str | Path, **options: Any) -> dict:
    """Phase 2: the alignment expert, L_REC + gamma * MK-MMD^2(reduced text, ID embeddings)."""
    ds = load_dataset(dataset)
    table, text_meta = _load_text(text, ds)
    _, id_saved = read_model_meta(id_model, ds, "pretrain")
    cfg = _inherit(id_saved["config"], options, id_model)
    id_weights = load_weights(id_model)

    def init(model: PadModel) -> None:
        _copy(model, "experts.align.tower.ids.", id_weights, "experts.id.tower.")
        _copy(model, "experts.align.backbone.", id_weights, "experts.id.backbone.")
        if cfg.align_mode == "frozen":
            model.experts["align"].tower.ids.emb.weight.requires_grad_(False)

    return _run_phase(
        "align", ds, out, cfg, ("align",), table, text_meta, {"id_model": str(id_model)}, init,
        extra=_alignment_extra(cfg), rec_weight=0.0 if cfg.align_mode == "non-anchored" else 1.0,
    )


def finetune(
    dataset: str | Path, text: str | Path, id_model: str | Path, align_model: str | Path, out: str | Path,
    **options: Any,
) -> dict:
    """Phase 3: ID, alignment and LLM experts fused by the frequency-aware gate, L_REC only."""
    ds = load_dataset(dataset)
    table, text_meta = _load_text(text, ds)
    _, id_saved = read_model_meta(id_model, ds, "pretrain")
    align_meta, align_saved = read_model_meta(align_model, ds, "align")
    if align_meta.get("text_hash") != text_meta.get("text_hash"):
        raise PadError(f"{align_model}: aligned with another text artifact than {text}")
    _check_arch(id_saved["config"], align_saved["config"], align_model)
    cfg = _inherit(align_saved["config"], options, align_model)
    id_weights, align_weights = load_weights(id_model), load_weights(align_model)

    def init(model: PadModel) -> None:
        if "id" in model.experts:
            _copy(model, "experts.id.", id_weights, "experts.id.")
        if "align" in model.experts:
            _copy(model, "experts.align.", align_weights, "experts.align.")
        if "llm" in model.experts and cfg.llm_init == "align":
            # a text-only expert that already speaks the collaborative space; it then learns on its own
            _copy(model, "experts.llm.tower.", align_weights, "experts.align.tower.text.")
            _copy(model, "experts.llm.backbone.", align_weights, "experts.align.backbone.")

    parents = {"id_model": str(id_model), "align_model": str(align_model)}
    return _run_phase("finetune", ds, out, cfg, cfg.experts, table, text_meta, parents, init)


# ---------------------------------------------------------------- shared machinery


def _run_phase(
    phase: str,
    ds: Dataset,
    out: str | Path,
    cfg: TrainConfig,
    kinds: tuple[str, ...],
    text: np.ndarray | None,
    text_meta: dict | None,
    parents: dict,
    init: Callable[[PadModel], None] | None = None,
    extra: ExtraLoss | None = None,
    rec_weight: float = 1.0,
) -> dict:
    t0 = time.perf_counter()
    cfg.lr = cfg.lr or PHASE_LR[phase]
    max_len = cfg.max_len or ds.meta["protocol"]["max_len"]
    cfg.max_len = max_len
    data = split_tensors(ds, max_len)
    torch.manual_seed(cfg.seed)
    n_buckets = ds.meta["protocol"]["buckets"]
    model = build_model(
        kinds, cfg, ds.n_items, max_len,
        None if text is None else torch.from_numpy(np.array(text, dtype=np.float32)),
        torch.from_numpy(ds.item_column("bucket").astype(np.int64)), n_buckets,
    )
    if init is not None:
        init(model)
    print(f"[{phase}] {'+'.join(kinds)} expert(s), {cfg.backbone}, loss {cfg.loss}, d={cfg.dim}, "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters", flush=True)
    with resumable_dir(out) as work:
        result = fit(model, data, cfg, work, extra=extra, rec_weight=rec_weight,
                     log=lambda s: print(f"[{phase}]{s}", flush=True))
        device = pick_device(cfg.device)
        metrics = {
            "valid": full_ranking_metrics(rank_split(model, data.valid, cfg, device), data.valid.targets.numpy(), ds),
            "test": full_ranking_metrics(rank_split(model, data.test, cfg, device), data.test.targets.numpy(), ds),
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": round(result.seconds_per_epoch, 3),
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "history": result.history,
            "config": cfg.to_dict(),
        }
        meta = {
            "phase": phase,
            "experts": list(kinds),
            "dataset_id": ds.dataset_id,
            "item_hash": ds.item_hash,
            "parents": parents,
        }
        if text_meta is not None:
            meta.update(text_hash=text_meta.get("text_hash"), text_encoder=text_meta.get("encoder"),
                        text_dim=int(text.shape[1]))
        arch = {"experts": list(kinds), "n_items": ds.n_items, "max_len": max_len, "n_buckets": n_buckets,
                "text_dim": None if text is None else int(text.shape[1])}
        save_model(work, model.cpu(), cfg, arch, meta, metrics)
        (work / RESUME).unlink(missing_ok=True)
    if result.best_epoch == 0 and result.epochs:
        print(f"[{phase}] note: no training epoch beat the starting point on validation, so the model is that "
              "starting point (epoch 0)", flush=True)
    t = metrics["test"]
    print(f"[{phase}] best epoch {result.best_epoch}/{result.epochs}; test HR@10 {t['hr@10']:.3f} nDCG@10 "
          f"{t['ndcg@10']:.3f} (warm {t['groups']['warm']['hr@10']:.2f} / median {t['groups']['median']['hr@10']:.2f}"
          f" / cold {t['groups']['cold']['hr@10']:.2f}); wrote {out}", flush=True)
    return metrics


def _alignment_extra(cfg: TrainConfig) -> ExtraLoss:
    """gamma * alignment loss over (up to mmd_items of) the distinct real items of a batch."""

    def extra(model: PadModel, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        tower = model.experts["align"].tower
        items = batch.unique()
        items = items[items > 0]
        if len(items) > cfg.mmd_items:
            items = items[torch.randperm(len(items), generator=gen, device=items.device)[: cfg.mmd_items]]
        return cfg.gamma * alignment_loss(tower.text(items), tower.ids(items), cfg)

    return extra


def _copy(model: PadModel, dst_prefix: str, weights: dict[str, torch.Tensor], src_prefix: str) -> None:
    """Load the weights under `src_prefix` into the model's parameters under `dst_prefix`."""
    sub = {dst_prefix + k[len(src_prefix):]: v for k, v in weights.items() if k.startswith(src_prefix)}
    own = model.state_dict()
    missing = [k for k in own if k.startswith(dst_prefix) and k not in sub]
    if not sub or missing:
        raise PadError(f"checkpoint lacks weights for {dst_prefix}* (missing {missing[:3]})")
    with torch.no_grad():
        for k, v in sub.items():
            own[k].copy_(v)


def _inherit(base: dict, options: dict, source: str | Path) -> TrainConfig:
    """A later phase's config: the earlier phase's (less its rate: each phase has its own), with the options on top."""
    cfg = TrainConfig.from_options({**base, "lr": 0.0}, **options)
    _check_arch(base, cfg.to_dict(), source)
    return cfg


def _check_arch(a: dict, b: dict, source: str | Path) -> None:
    diff = {f: (a.get(f), b.get(f)) for f in ARCH_FIELDS if a.get(f) != b.get(f)}
    if diff:
        raise PadError(f"{source}: architecture options differ from the earlier phase's: {diff}")


def _load_text(path: str | Path, ds: Dataset) -> tuple[np.ndarray, dict]:
    from padcore.text import load_text, read_text_meta

    return load_text(path, ds), read_text_meta(path)
