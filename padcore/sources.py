"""Source adapters: each turns one kind of raw data into `RawData`.

`load_source(spec)` picks the adapter by the spec's prefix:
`prime_pantry`, `amazon2018:<Category>`, `mind`, `files:<folder-or-gs://prefix>`.
"""

from __future__ import annotations

import ast
from typing import Callable

import numpy as np
import pandas as pd

from padcore.artifacts import sha256_file
from padcore.dataset import RawData
from padcore.download import data_home, fetch
from padcore.errors import PadError

PRIME_PANTRY_URL = "https://raw.githubusercontent.com/Applied-Machine-Learning-Lab/PAD/main/dataset/{name}"
PRIME_PANTRY_FILES = {
    "Prime_Pantry_cleaned_history.csv": "9087dcb1c800b1270840fa7f5a037177fcb485e48c12aa04296203476fd69485",
    "Prime_Pantry_fre.csv": "32a624102f826e37ced14924650415390bc88b3af543541740f0612e709ac678",
    "metadata_Prime_Pantry.csv": "539a936c75d982305eb82b28f8f8e4a85cf88c002b492045d26e4f86502c85d0",
}


def prime_pantry(arg: str = "") -> RawData:
    """The paper's Prime Pantry release: histories as Python-list strings, titles by ASIN."""
    folder = data_home() / "prime_pantry"
    paths = {
        name: fetch(PRIME_PANTRY_URL.format(name=name), folder / name, sha256)
        for name, sha256 in PRIME_PANTRY_FILES.items()
    }
    hist_path = paths["Prime_Pantry_cleaned_history.csv"]
    meta_path = paths["metadata_Prime_Pantry.csv"]
    hist = pd.read_csv(hist_path, usecols=["user", "history"], dtype=str, keep_default_na=False)
    users, items, positions = [], [], []
    for row, (user, history) in enumerate(zip(hist["user"], hist["history"])):
        try:
            seq = ast.literal_eval(history)
        except (ValueError, SyntaxError) as exc:
            raise PadError(f"{hist_path} row {row + 1}: field 'history' is not a list of item ids ({exc})") from exc
        if not isinstance(seq, list):
            raise PadError(f"{hist_path} row {row + 1}: field 'history' is not a list of item ids")
        users.extend([user] * len(seq))
        items.extend(map(str, seq))
        positions.extend(range(len(seq)))
    interactions = pd.DataFrame({"user": users, "item": items, "timestamp": np.asarray(positions, dtype=np.int64)})
    titles = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    if "asin" not in titles.columns or "title" not in titles.columns:
        raise PadError(f"{meta_path}: expected columns 'asin,title', got {list(titles.columns)}")
    titles = titles.rename(columns={"asin": "item", "title": "text"})
    titles.index = titles.index + 2  # file line numbers (header is line 1)
    return RawData(
        interactions=interactions,
        items=titles[["item", "text"]],
        interactions_file=str(hist_path),
        items_file=str(meta_path),
        source="prime_pantry",
        input_hashes={name: PRIME_PANTRY_FILES[name] for name in (hist_path.name, meta_path.name)},
    )


ADAPTERS: dict[str, Callable[[str], RawData]] = {
    "prime_pantry": prime_pantry,
}


def load_source(spec: str) -> RawData:
    """Load raw data named by a source spec such as `prime_pantry` or `files:/data/x`."""
    name, _, arg = spec.partition(":")
    if name not in ADAPTERS:
        raise PadError(f"unknown source {spec!r}; expected one of: prime_pantry, amazon2018:<Category>, mind, files:<folder>")
    return ADAPTERS[name](arg)


def file_hashes(*paths) -> dict[str, str]:
    """SHA-256 of each input file, keyed by file name, for the dataset's meta.json."""
    return {str(p).rsplit("/", 1)[-1]: sha256_file(p) for p in paths}
