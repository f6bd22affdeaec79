"""Training steps: any registered model (`train`), one stage of it (`train_stage`), and PAD's three phases.

A stage reads the dataset (and the text table when its model needs one), starts
from the artifacts of the earlier stages it needs, trains, evaluates its best
checkpoint on the validation and test splits, and writes a model artifact.
Rerunning with the same `out` after an interruption resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padcore.artifacts import resumable_dir
from padcore.batches import split_tensors
from padcore.checkpoint import load_weights, read_model_meta, save_model
from padcore.config import TrainConfig
from padcore.dataset import Dataset, load_dataset
from padcore.errors import PadError
from padcore.experts import TextTable
from padcore.metrics import full_ranking_metrics
from padcore.models.spec import ModelSpec, Shape, Stage, StageContext
from padcore.options import build_options
from padcore.registry import MODELS
from padcore.trainer import RESUME, RecObjective, fit, pick_device, rank_split, valid_sample

# fields that fix the shape of the weights: a stage must keep its earlier stages' values
ARCH_FIELDS = ("backbone", "dim", "layers", "heads", "max_len", "caser_window", "text_hidden")
STAGES = "stages"  # the folder of a whole-model artifact that holds its earlier stages' artifacts


def pretrain(dataset: str | Path, out: str | Path, **options: Any) -> dict:
    """PAD phase 1: the backbone on item IDs only (the `id` model)."""
    return train_stage("id", "pretrain", dataset, None, {}, out, **options)


def align(dataset: str | Path, text: str | Path, id_model: str | Path, out: str | Path, **options: Any) -> dict:
    """PAD phase 2: the alignment expert, L_REC + gamma * MK-MMD^2(reduced text, ID embeddings)."""
    return train_stage("pad", "align", dataset, text, {"pretrain": id_model}, out, **options)


def finetune(dataset: str | Path, text: str | Path, id_model: str | Path, align_model: str | Path,
             out: str | Path, **options: Any) -> dict:
    """PAD phase 3: the ID, alignment, LLM and text-similarity experts and their frequency-aware fusion."""
    return train_stage("pad", "finetune", dataset, text, {"pretrain": id_model, "align": align_model}, out,
                       **options)


def train(model: str, dataset: str | Path, text: str | Path | None, out: str | Path,
          parents: dict[str, str | Path] | None = None, reuse: dict[str, str | Path] | None = None,
          **options: Any) -> dict:
    """Every stage of a registered model, in order; returns the last stage's metrics.

    The artifact at `out` is the last stage's; the earlier stages' artifacts are
    kept in `out/stages/<stage>/`. A stage given in `parents` (stage -> artifact)
    is not trained again but taken from there; `reuse` offers artifacts the same
    way for stages the model may or may not have (a pipeline's phase-1 model).
    """
    spec = MODELS[model]
    earlier = {s.name for s in spec.stages[:-1]}
    given = {name: Path(p) for name, p in (parents or {}).items()}
    unknown = sorted(set(given) - earlier)
    if unknown:
        raise PadError(f"model {model!r} has no earlier stage {unknown}; its stages: "
                       f"{', '.join(s.name for s in spec.stages)}")
    given.update({name: Path(p) for name, p in (reuse or {}).items() if name in earlier and name not in given})
    ds, table, text_meta = _inputs(spec, dataset, text)

    def named(stage: Stage, own: str) -> dict[str, str]:
        """How an artifact names its parents: its model's own stages by a path relative to it, others as given."""
        return {n: str(given[n]) if n in given else f"{own}{n}" for n in stage.needs}

    with resumable_dir(out) as work:
        done: dict[str, Path] = {}
        for stage in spec.stages[:-1]:
            if stage.name in given:
                done[stage.name] = given[stage.name]
                continue
            folder = work / STAGES / stage.name
            if not (folder / "metrics.json").is_file():  # an earlier run of this command finished it
                with resumable_dir(folder) as stage_work:
                    _run_stage(spec, stage, ds, table, text_meta, _parents(stage, done), stage_work, options,
                               named(stage, "../"))
            done[stage.name] = folder
        last = spec.stages[-1]
        return _run_stage(spec, last, ds, table, text_meta, _parents(last, done), work, options,
                          named(last, f"{STAGES}/"))


def check_baselines(names: list) -> list[str]:
    """The registered models to train beside PAD; an unknown or repeated name, or PAD itself, is an error."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PadError(f"parameter 'baselines' is {names!r}; expected a list of model names")
    for name in names:
        MODELS[name]  # an unknown name names the known ones
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated or "pad" in names:
        raise PadError(f"parameter 'baselines' lists {repeated or ['pad']} more than once or PAD itself, which every "
                       "run trains")
    return names


def train_stage(model: str, stage: str, dataset: str | Path, text: str | Path | None,
                parents: dict[str, str | Path], out: str | Path, **options: Any) -> dict:
    """One stage of a registered model, from the artifacts of the earlier stages it needs."""
    spec = MODELS[model]
    st = spec.stage(stage)
    missing = sorted(set(st.needs) - set(parents))
    if missing:
        raise PadError(f"stage {stage!r} of model {model!r} starts from the {', '.join(missing)} stage: pass its artifact")
    ds, table, text_meta = _inputs(spec, dataset, text)
    with resumable_dir(out) as work:
        return _run_stage(spec, st, ds, table, text_meta, {k: Path(p) for k, p in parents.items()}, work, options)


def _parents(stage: Stage, done: dict[str, Path]) -> dict[str, Path]:
    return {name: done[name] for name in stage.needs}


def _inputs(spec: ModelSpec, dataset: str | Path, text: str | Path | None):
    ds = load_dataset(dataset)
    if not spec.needs_text:
        return ds, None, None
    if text is None:
        raise PadError(f"model {spec.name!r} needs a text artifact (pad embed): pass --text")
    from padcore.text import load_text, read_text_meta

    table = load_text(text, ds)
    return ds, torch.from_numpy(np.require(table, requirements="W")), read_text_meta(text)


def stage_config(spec: ModelSpec, stage: Stage, parents: dict[str, dict], options: dict[str, Any]
                 ) -> tuple[TrainConfig, Any]:
    """The stage's training config and model options.

    Starting from the latest parent's config (less the fields the stage sets
    itself, e.g. its learning rate), then the stage's defaults, then `options`.
    Model options (the spec's own dataclass) are split off the training ones.
    """
    own = {f.name for f in dataclasses.fields(spec.options)} if spec.options else set()
    train_opts = {k: v for k, v in options.items() if k not in own}
    model_opts = {k: v for k, v in options.items() if k in own}
    base: dict[str, Any] = {}
    inherited_options: dict[str, Any] = {}
    for saved in parents.values():
        base = {k: v for k, v in saved["config"].items() if k not in stage.defaults}
        if saved.get("model") == spec.name:
            inherited_options = saved.get("options") or {}
    unknown = sorted(set(train_opts) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        known = sorted({f.name for f in dataclasses.fields(TrainConfig)} | own)
        raise PadError(f"unknown training option(s) {unknown} for model {spec.name!r}; known: {', '.join(known)}")
    cfg = TrainConfig.from_options({**base, **stage.defaults}, **train_opts)
    for name, saved in parents.items():
        diff = {f: (saved["config"].get(f), getattr(cfg, f)) for f in ARCH_FIELDS
                if saved["config"].get(f) != getattr(cfg, f)}
        if diff:
            raise PadError(f"the {name} stage's artifact was trained with other architecture options: {diff}")
    opts = build_options(spec.options, f"{spec.name}", {**inherited_options, **model_opts}) if spec.options else None
    return cfg, opts


def _run_stage(spec: ModelSpec, stage: Stage, ds: Dataset, text: torch.Tensor | None, text_meta: dict | None,
               parent_dirs: dict[str, Path], work: Path, options: dict[str, Any],
               parent_names: dict[str, str] | None = None) -> dict:
    """Train one stage into `work`; meta.json names its parents as `parent_names` says (default: their paths)."""
    t0 = time.perf_counter()
    saved = {}
    for name, folder in parent_dirs.items():
        meta, config = read_model_meta(folder, ds, name)
        if text_meta is not None and meta.get("text_hash") not in (None, text_meta.get("text_hash")):
            raise PadError(f"{folder}: trained with another text artifact than the one given")
        saved[name] = config
    cfg, opts = stage_config(spec, stage, saved, options)
    cfg.max_len = cfg.max_len or ds.meta["protocol"]["max_len"]
    shape = Shape(ds.n_items, cfg.max_len, ds.meta["protocol"]["buckets"], None if text is None else text.shape[1])
    ctx = StageContext(cfg, opts, shape, None if text is None else TextTable(text),
                       torch.from_numpy(ds.item_column("bucket").astype(np.int64)),
                       {name: load_weights(folder) for name, folder in parent_dirs.items()},
                       split_tensors(ds, cfg.max_len))
    torch.manual_seed(cfg.seed)
    model = stage.build(ctx)
    if stage.init is not None:
        stage.init(model, ctx)
    tag = spec.name if len(spec.stages) == 1 else f"{spec.name}:{stage.name}"

    def log(line: str) -> None:
        print(f"[{tag}]{line}", flush=True)

    log(f" {'+'.join(model.experts)} expert(s), {cfg.backbone}, loss {cfg.loss}, d={cfg.dim}, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters")
    if stage.train is not None:
        result = stage.train(model, ctx, work, log)
    else:
        objective = RecObjective(ctx.data, stage.extra(ctx) if stage.extra else None, stage.rec_weight(cfg))
        result = fit(model, objective, ctx.data.valid, cfg, work, log)
    device = pick_device(cfg.device)
    data = ctx.data
    valid = valid_sample(data.valid, cfg)  # with valid_users set, the sample that chose the epoch
    metrics = {
        "valid": full_ranking_metrics(rank_split(model, valid, cfg, device, log), valid.targets.numpy(), ds),
        "test": full_ranking_metrics(rank_split(model, data.test, cfg, device, log), data.test.targets.numpy(), ds),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "history": result.history,
        **result.info,
        "config": cfg.to_dict(),
    }
    meta = {"model": spec.name, "phase": stage.name, "experts": list(model.experts), "dataset_id": ds.dataset_id,
            "item_hash": ds.item_hash, "parents": parent_names or {k: str(v) for k, v in parent_dirs.items()}}
    if text_meta is not None:
        meta.update(text_hash=text_meta.get("text_hash"), text_encoder=text_meta.get("encoder"),
                    text_dim=int(text.shape[1]))
    save_model(work, model.cpu(), spec.name, stage.name, cfg, opts, dataclasses.asdict(shape), meta, metrics)
    (work / RESUME).unlink(missing_ok=True)
    if result.best_epoch == 0 and result.epochs:
        log(" note: no training epoch beat the starting point on validation, so the model is that starting "
            "point (epoch 0)")
    t = metrics["test"]
    log(f" best epoch {result.best_epoch}/{result.epochs}; test HR@10 {t['hr@10']:.3f} nDCG@10 {t['ndcg@10']:.3f} "
        f"(warm {t['groups']['warm']['hr@10']:.2f} / median {t['groups']['median']['hr@10']:.2f} / cold "
        f"{t['groups']['cold']['hr@10']:.2f})")
    return metrics
