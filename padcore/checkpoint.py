"""Model artifacts: `model.safetensors` + `config.json` + `metrics.json` + `meta.json`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from padcore.artifacts import meta_field, read_json, read_meta, write_json
from padcore.config import EXPERTS, TrainConfig
from padcore.dataset import Dataset
from padcore.errors import PadError
from padcore.experts import FusedTower, IdTower, PadModel, TextTower, build_model

WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.json"


def save_model(folder: Path, model: PadModel, cfg: TrainConfig, arch: dict, meta: dict, metrics: dict) -> None:
    """Write a model artifact's files into `folder` (the caller makes it atomic)."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / WEIGHTS))
    write_json(folder / CONFIG, {"config": cfg.to_dict(), **arch})
    write_json(folder / METRICS, metrics)
    write_json(folder / "meta.json", {"kind": "model", **meta})


def read_model_meta(folder: str | Path, ds: Dataset, phase: str) -> tuple[dict, dict]:
    """(meta, config.json) of a model artifact, checked against the dataset and the expected phase."""
    folder = Path(folder)
    meta = read_meta(folder, "model")
    if meta.get("phase") != phase:
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


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PadError(f"{path}: not a readable safetensors file ({exc})") from exc


def load_model(folder: str | Path, text: np.ndarray | None = None) -> PadModel:
    """Rebuild a saved PadModel (the frozen text table is an input, not a weight)."""
    folder = Path(folder)
    where = folder / CONFIG
    saved = read_json(where)
    try:
        cfg = TrainConfig.from_options(meta_field(saved, "config", dict, where))
    except PadError as exc:
        raise PadError(f"{where}: field 'config': {exc}") from exc
    kinds = tuple(meta_field(saved, "experts", list, where))
    if not kinds or not set(kinds) <= set(EXPERTS):
        raise PadError(f"{where}: field 'experts' is {list(kinds)}; expected some of {list(EXPERTS)}")
    n_items, max_len = (meta_field(saved, name, int, where) for name in ("n_items", "max_len"))
    n_buckets = meta_field(saved, "n_buckets", int, where) if "n_buckets" in saved else 10
    if min(n_items, max_len, n_buckets) < 1:
        raise PadError(f"{where}: fields n_items, max_len, n_buckets are {n_items}, {max_len}, {n_buckets}; "
                       "expected positive numbers")
    if any(k != "id" for k in kinds) and text is None:
        raise PadError(f"{folder}: this model has text experts; pass the text artifact it was trained with")
    model = build_model(
        kinds,
        cfg,
        n_items,
        max_len,
        None if text is None else torch.from_numpy(np.asarray(text, dtype=np.float32)),
        torch.zeros(n_items + 1, dtype=torch.long),  # the saved buckets replace these
        n_buckets,
    )
    try:
        model.load_state_dict(load_weights(folder))
    except RuntimeError as exc:  # missing, unexpected or misshapen weights
        raise PadError(f"{folder / WEIGHTS}: does not hold the weights {where} describes ({exc})") from exc
    return model.eval()


@torch.no_grad()
def item_tables(model_dir: str | Path, text: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-item embedding tables [n_items+1, d] of a model artifact, by expert and part.

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
            assert isinstance(t, (IdTower, TextTower))
            out[f"{name}.{part}"] = t.table().float().numpy()
    if phase == "pretrain":
        return {"id": out["id.id"]}
    return out
