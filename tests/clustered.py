"""A small synthetic world where item text carries the signal for cold items.

Items fall into clusters; a user stays inside one cluster. Each cluster has
popular items that fill the training sequences and cold items that are almost
never trained on but are often the validation and test targets; their text (the
cluster's direction plus noise) is what tells where they belong.

With `chains`, a user walks the cluster's popular items in a fixed cycle and a
popular target is the walk's next step: only an ID model can tell which popular
item comes next (their text is alike), only text can place a cold one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from padcore.dataset import Protocol, RawData, build_dataset, write_dataset


def clustered_world(folder: Path, n_users: int = 500, clusters: int = 8, warm: int = 12, cold: int = 8,
                    seed: int = 0, chains: bool = False) -> tuple[Path, np.ndarray]:
    """Write a dataset artifact to `folder`; return its path and the text table [n_items+1, 16]."""
    rng = np.random.default_rng(seed)
    per = warm + cold
    users, items, stamps = [], [], []
    for u in range(n_users):
        c = rng.integers(clusters)
        length = rng.integers(6, 10)
        if chains:
            start = rng.integers(warm)
            walk = [(start + k) % warm for k in range(length)]
            seq = [c * per + walk[k] for k in range(length - 2)]
            # validation and test targets: half of them cold, the others the walk's next popular item
            seq += [c * per + (warm + rng.integers(cold) if rng.random() < 0.5 else walk[k])
                    for k in (length - 2, length - 1)]
        else:
            seq = list(c * per + rng.choice(warm, length - 2, replace=False))
            # validation and test targets: half of them cold items of the user's cluster
            seq += [c * per + (warm + rng.integers(cold) if rng.random() < 0.5 else rng.integers(warm))
                    for _ in range(2)]
        users += [f"u{u}"] * length
        items += [f"i{i}" for i in seq]
        stamps += list(range(length))
    n_items = clusters * per
    raw = RawData(
        interactions=pd.DataFrame({"user": users, "item": items, "timestamp": stamps}),
        items=pd.DataFrame({"item": [f"i{i}" for i in range(n_items)], "text": [f"item {i}" for i in range(n_items)]}),
        interactions_file="synthetic", items_file="synthetic", source="synthetic:clustered",
    )
    ds = build_dataset(raw, Protocol(max_len=10, buckets=4))
    path = write_dataset(ds, folder)
    # item_idx follows the items' row order over the items that occur: map back to clusters
    keys = ds.items["item"].str[1:].astype(int).to_numpy()
    centers = rng.normal(size=(clusters, 16)) * 2
    text = np.zeros((ds.n_items + 1, 16), dtype=np.float32)
    text[1:] = centers[keys // per] + rng.normal(scale=0.3, size=(ds.n_items, 16))
    return path, text
