"""Model artifacts: `model.safetensors` + `config.json` + `metrics.json` + `meta.json`.

config.json names the registered model and stage, so `load_model` rebuilds any
artifact with that stage's own `build`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from padcore.artifacts import meta_field, read_json, read_meta, write_json
from padcore.config import TrainConfig
from padcore.dataset import Dataset
from padcore.errors import PadError
from padcore.experts import FusedTower, IdTower, PadModel, TextTable, TextTower
from padcore.models.spec import Shape, StageContext
from padcore.options import build_options
from padcore.registry import MODELS

WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.json"


def save_model(folder: Path, model: PadModel, name: str, stage: str, cfg: TrainConfig, options: Any, shape: dict,
               meta: dict, metrics: dict) -> None:
    """Write a model artifact's files into `folder` (the caller makes it atomic)."""
    # clone: experts may share a module (one backbone, two views), and safetensors stores each tensor once
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    # through Python's file writer, so a full disk is an OSError that names the file
    (folder / WEIGHTS).write_bytes(save(weights))
    write_json(folder / CONFIG, {"model": name, "phase": stage, "config": cfg.to_dict(),
                                 "options": dataclasses.asdict(options) if options is not None else None,
                                 "experts": list(model.experts), **shape})
    write_json(folder / METRICS, metrics)
    write_json(folder / "meta.json", {"kind": "model", **meta})


def read_model_meta(folder: str | Path, ds: Dataset, phase: str | None = None) -> tuple[dict, dict]:
    """(meta, config.json) of a model artifact, checked against the dataset and (when given) the expected stage."""
    folder = Path(folder)
    meta = read_meta(folder, "model")
    if phase is not None and meta.get("phase") != phase:
        raise PadError(f"{folder / 'meta.json'}: phase is {meta.get('phase')!r}, expected a {phase!r} model")
    if meta.get("dataset_id") != ds.dataset_id:
        raise PadError(
            f"{folder / 'meta.json'}: made from dataset {meta.get('dataset_id')}, but the dataset given is "
            f"{ds.dataset_id} ({ds.path}); use the model trained on this dataset"
        )
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise PadError(f"{folder / name}: missing from the model artifact")
    return meta, read_json(folder / CONFIG)


def model_title(folder: str | Path) -> str:
    """A model artifact's name in a results table: "SASRec", "alignment expert", "PAD", "Hybrid", ..."""
    saved = read_json(Path(folder) / CONFIG)
    spec = MODELS[saved["model"]]
    stage = spec.stage(saved["phase"])
    name = spec.display_name(saved["config"].get("backbone", "sasrec"))
    if stage.name == spec.stages[-1].name:
        return name
    return stage.title or f"{name} ({stage.name})"


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PadError(f"{path}: not a readable safetensors file ({exc})") from exc


def load_model(folder: str | Path, text: np.ndarray | torch.Tensor | None = None) -> PadModel:
    """Rebuild a saved model (the frozen text table is an input, not a weight), in evaluation mode."""
    folder = Path(folder)
    where = folder / CONFIG
    saved = read_json(where)
    try:
        spec = MODELS[meta_field(saved, "model", str, where)]
        stage = spec.stage(meta_field(saved, "phase", str, where))
        cfg = TrainConfig.from_options(meta_field(saved, "config", dict, where))
        options = build_options(spec.options, spec.name, meta_field(saved, "options", dict, where)) \
            if spec.options else None
    except PadError as exc:
        raise PadError(f"{where}: {exc}") from exc
    if stage.text and text is None:
        raise PadError(f"{folder}: this {spec.name} model reads item texts; pass the text artifact it was "
                       "trained with")
    n_items, max_len, n_buckets = (meta_field(saved, name, int, where) for name in ("n_items", "max_len", "n_buckets"))
    if min(n_items, max_len, n_buckets) < 1:
        raise PadError(f"{where}: fields n_items, max_len, n_buckets are {n_items}, {max_len}, {n_buckets}; "
                       "expected positive numbers")
    shape = Shape(n_items, max_len, n_buckets, meta_field(saved, "text_dim", (int, type(None)), where))
    table = None if text is None else TextTable(torch.as_tensor(np.asarray(text)) if isinstance(text, np.ndarray)
                                                else text)
    # the saved buckets (a buffer of the fusion) replace these zeros
    ctx = StageContext(cfg, options, shape, table, torch.zeros(shape.n_items + 1, dtype=torch.long))
    model = stage.build(ctx)
    try:
        model.load_state_dict(load_weights(folder))
    except RuntimeError as exc:  # missing, unexpected or misshapen weights
        raise PadError(f"{folder / WEIGHTS}: does not hold the weights {where} describes ({exc}); a model "
                       "saved by a version of pad whose architecture for it differs must be trained again") from exc
    return model.eval()


@torch.no_grad()
def item_tables(model_dir: str | Path, text: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-item embedding tables [n_items+1, d] of a PAD-family model artifact, by expert and part.

    pretrain -> {"id"}; align -> {"align.id", "align.text"};
    finetune -> {"id.id", "align.id", "align.text", "llm.text"} ("*.text" = the expert's reduced text).
    """
    model = load_model(model_dir, text)
    phase = read_meta(model_dir, "model").get("phase")
    out: dict[str, np.ndarray] = {}
    for name, expert in model.experts.items():
        tower = expert.tower
        parts = {"id": tower.ids, "text": tower.text} if isinstance(tower, FusedTower) else {
            "id" if isinstance(tower, IdTower) else "text": tower
        }
        for part, t in parts.items():
            if isinstance(t, (IdTower, TextTower)):
                out[f"{name}.{part}"] = t.table().float().numpy()
    if phase == "pretrain":
        return {"id": out["id.id"]}
    return out
