"""A small shop trained twice: last month's models (the champion) and this month's, on more items.

`old` is the log without the items i50..i59, which appear only in `new`; both
datasets get a random text table and tiny PAD models (all three phases), so a
champion that lacks new items, text experts in a published version and the
gate all take part in the tests that use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from padcore import training as phases
from padcore.dataset import Dataset, Protocol, build_dataset, write_dataset
from padcore.text import EMBEDDINGS, FORMAT

TINY = dict(dim=16, layers=1, epochs=3, patience=2, batch_size=64, threads=1, seed=0)
NEW_ITEMS = {f"i{k}" for k in range(50, 60)}


def write_text(folder: Path, table: np.ndarray, ds: Dataset, text_hash: str) -> Path:
    """A text artifact holding `table` for the dataset's items."""
    folder.mkdir(parents=True)
    np.save(folder / EMBEDDINGS, table.astype(np.float32))
    meta = {"kind": "text", "format": FORMAT, "encoder": "synthetic", "rows": table.shape[0], "dim": table.shape[1],
            "dtype": "float32", "item_hash": ds.item_hash, "dataset_id": ds.dataset_id, "text_hash": text_hash}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def train_shop(root: Path, raw) -> dict[str, Path]:
    """Datasets, text tables and phase-1..3 models of `old` and `new` under `root`; returns their paths."""
    rng = np.random.default_rng(0)
    vectors = {key: rng.normal(size=8) for key in raw.items["item"]}  # one text vector per item id
    logs = {"old": raw.interactions[~raw.interactions["item"].isin(NEW_ITEMS)], "new": raw.interactions}
    paths: dict[str, Path] = {}
    for name, inter in logs.items():
        ds = build_dataset(type(raw)(inter, raw.items, "interactions.csv", "items.csv", f"synthetic:{name}"),
                           Protocol(max_len=10, buckets=4))
        write_dataset(ds, root / name / "dataset")
        table = np.zeros((ds.n_items + 1, 8), dtype=np.float32)
        table[1:] = np.stack([vectors[k] for k in ds.items["item"]])
        write_text(root / name / "text", table, ds, f"synthetic-{name}")
        d, t = root / name / "dataset", root / name / "text"
        phases.pretrain(d, root / name / "m1", **TINY)
        phases.align(d, t, root / name / "m1", root / name / "m2", epochs=3, threads=1)
        phases.finetune(d, t, root / name / "m1", root / name / "m2", root / name / "m3", epochs=3, threads=1)
        paths.update({f"{name}_dataset": d, f"{name}_text": t, f"{name}_model": root / name / "m3",
                      f"{name}_id_model": root / name / "m1"})
    return paths
