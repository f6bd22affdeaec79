"""The dataset artifact: the paper's protocol applied to raw logs, and its files.

One module owns this artifact. `build_dataset` turns raw interactions and item
texts into it, `write_dataset` stores it, `load_dataset` reads and validates it;
every later step goes through `load_dataset`.

Files of the artifact folder:
- `items.parquet`: item_idx (1..n; 0 is padding), item (the source's key), text,
  freq (training-set frequency), bucket (1 = warmest .. B), group (warm/median/cold).
- `sequences.parquet`: user, items (chronological list of item_idx).
- `meta.json`: counts, protocol, split sizes, bucket edges, input hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from padcore.artifacts import META, atomic_dir, read_meta, write_json
from padcore.errors import PadError

FORMAT = "pad.dataset/1"
GROUPS = ("warm", "median", "cold")
ITEM_COLUMNS = ("item_idx", "item", "text", "freq", "bucket", "group")


@dataclass(frozen=True)
class Protocol:
    """The paper's protocol (App. A).

    A user needs `min_len` interactions; the latest `max_len + 3` are kept: up to
    `max_len` inputs before the last training target, the validation target
    (second to last) and the test target (last).
    """

    max_len: int = 20
    min_len: int = 5
    buckets: int = 10

    def __post_init__(self) -> None:
        if self.min_len < 3:
            raise PadError(f"min_len={self.min_len}: need at least 3 (a train, a valid and a test target)")
        if self.max_len < 1 or self.buckets < 1:
            raise PadError(f"max_len={self.max_len}, buckets={self.buckets}: both must be positive")

    @property
    def keep_last(self) -> int:
        return self.max_len + 3


@dataclass
class RawData:
    """What every source adapter returns, before the protocol is applied.

    `interactions` has columns user, item, timestamp (ties keep row order) and
    `items` has columns item, text; both indexed by their row number in the file
    named by `interactions_file` / `items_file`, so errors can point at the row.
    The row order of `items` defines item_idx.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    interactions_file: str
    items_file: str
    source: str
    input_hashes: dict[str, str] = field(default_factory=dict)


@dataclass
class Dataset:
    """A loaded dataset artifact. Sequences are stored flat (CSR) for speed."""

    items: pd.DataFrame
    users: np.ndarray
    offsets: np.ndarray  # int64 [n_users + 1]
    flat: np.ndarray  # int32 item_idx, user by user, oldest first
    meta: dict
    path: Path | None = None

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, u: int) -> np.ndarray:
        return self.flat[self.offsets[u] : self.offsets[u + 1]]

    def item_column(self, name: str) -> np.ndarray:
        """A per-item column indexed by item_idx (row 0 = padding, filled with 0)."""
        col = self.items[name].to_numpy()
        out = np.zeros(len(col) + 1, dtype=col.dtype if col.dtype != object else object)
        out[1:] = col
        return out

    @property
    def item_hash(self) -> str:
        return self.meta["item_hash"]

    @property
    def dataset_id(self) -> str:
        return self.meta["dataset_id"]


def mass_bins(freq: np.ndarray, n_bins: int) -> np.ndarray:
    """Assign items to `n_bins` bins of about equal interaction mass, 1 = warmest.

    Items are sorted by frequency (descending, ties by position); an item goes to
    the bin holding the midpoint of its share of the cumulative mass. Items never
    seen in training go to the coldest bin. A single item heavier than a bin's
    share can leave a bin number unused.
    """
    freq = np.asarray(freq, dtype=np.float64)
    if len(freq) == 0:
        return np.zeros(0, dtype=np.int16)
    order = np.lexsort((np.arange(len(freq)), -freq))
    f = freq[order]
    total = f.sum()
    if total <= 0:
        return np.full(len(freq), n_bins, dtype=np.int16)
    mid = np.cumsum(f) - f / 2
    b = np.minimum((mid / total * n_bins).astype(np.int64), n_bins - 1) + 1
    b[f == 0] = n_bins
    out = np.empty(len(freq), dtype=np.int16)
    out[order] = b
    return out


def train_frequency(n_items: int, offsets: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Per-item count over the training part of each sequence (all but the last two)."""
    pos = np.arange(len(flat)) - np.repeat(offsets[:-1], np.diff(offsets))
    in_train = pos < np.repeat(np.diff(offsets) - 2, np.diff(offsets))
    return np.bincount(flat[in_train], minlength=n_items + 1)[1:].astype(np.int64)


def _hash_items(keys: pd.Series, texts: pd.Series) -> str:
    h = hashlib.sha256()
    for k, t in zip(keys.astype(str), texts.astype(str)):
        h.update(k.encode())
        h.update(b"\x00")
        h.update(t.encode())
        h.update(b"\x01")
    return h.hexdigest()


def _dataset_id(item_hash: str, offsets: np.ndarray, flat: np.ndarray) -> str:
    h = hashlib.sha256(item_hash.encode())
    h.update(np.ascontiguousarray(offsets, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(flat, dtype=np.int32).tobytes())
    return h.hexdigest()[:16]


def _check_items(raw: RawData) -> pd.DataFrame:
    items = raw.items
    for col in ("item", "text"):
        if col not in items.columns:
            raise PadError(f"{raw.items_file}: missing column {col!r} (have {list(items.columns)})")
    keys = items["item"].astype(str)
    dup = keys.duplicated(keep="first")
    if dup.any():
        row = items.index[dup.to_numpy().argmax()]
        raise PadError(f"{raw.items_file} row {row}: duplicate item id {keys[row]!r}")
    text = items["text"]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    if empty.any():
        row = items.index[empty.to_numpy().argmax()]
        raise PadError(f"{raw.items_file} row {row}: item {keys[row]!r} has no text (field 'text')")
    return pd.DataFrame({"item": keys, "text": text.astype(str)}, index=items.index)


def _check_interactions(raw: RawData, known: pd.Index) -> pd.DataFrame:
    inter = raw.interactions
    for col in ("user", "item", "timestamp"):
        if col not in inter.columns:
            raise PadError(f"{raw.interactions_file}: missing column {col!r} (have {list(inter.columns)})")
    for col in ("user", "item", "timestamp"):
        bad = inter[col].isna()
        if bad.any():
            row = inter.index[bad.to_numpy().argmax()]
            raise PadError(f"{raw.interactions_file} row {row}: empty field {col!r}")
    items = inter["item"].astype(str)
    unknown = ~items.isin(known)
    if unknown.any():
        row = inter.index[unknown.to_numpy().argmax()]
        raise PadError(
            f"{raw.interactions_file} row {row}: item {items[row]!r} is not in {raw.items_file} "
            f"({int(unknown.sum())} interaction(s) with unknown items)"
        )
    ts = inter["timestamp"]
    if not pd.api.types.is_numeric_dtype(ts):
        ts = pd.to_datetime(ts, errors="coerce", utc=True)
        bad = ts.isna()
        if bad.any():
            row = inter.index[bad.to_numpy().argmax()]
            raise PadError(f"{raw.interactions_file} row {row}: field 'timestamp' is not a number or a date")
        ts = ts.astype("int64")
    return pd.DataFrame({"user": inter["user"].astype(str), "item": items, "timestamp": ts})


def build_dataset(raw: RawData, protocol: Protocol = Protocol()) -> Dataset:
    """Apply the protocol to raw data: filter, truncate, index, count, bucket."""
    items = _check_items(raw)
    item_codes = pd.Index(items["item"])
    inter = _check_interactions(raw, item_codes)

    user_code, users = pd.factorize(inter["user"], sort=False)
    item_code = item_codes.get_indexer(inter["item"])  # 0-based in items' row order
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), user_code))
    user_code, item_code = user_code[order], item_code[order]

    counts = np.bincount(user_code, minlength=len(users))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    from_end = np.repeat(starts + counts, counts) - np.arange(len(user_code))  # 1 = latest
    keep = (counts[user_code] >= protocol.min_len) & (from_end <= protocol.keep_last)
    user_code, item_code = user_code[keep], item_code[keep]
    if len(user_code) == 0:
        raise PadError(
            f"{raw.interactions_file}: no user has {protocol.min_len} or more interactions; nothing left after filtering"
        )

    used = np.zeros(len(items), dtype=bool)
    used[item_code] = True
    new_idx = np.cumsum(used).astype(np.int32)  # 1-based ids in the items' row order
    flat = new_idx[item_code]
    kept_users, user_code = np.unique(user_code, return_inverse=True)
    counts = np.bincount(user_code)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    table = items[used].reset_index(drop=True)
    n_items = len(table)
    freq = train_frequency(n_items, offsets, flat)
    table.insert(0, "item_idx", np.arange(1, n_items + 1, dtype=np.int32))
    table["freq"] = freq
    table["bucket"] = mass_bins(freq, protocol.buckets)
    table["group"] = np.asarray(GROUPS)[mass_bins(freq, len(GROUPS)) - 1]

    item_hash = _hash_items(table["item"], table["text"])
    lengths = np.diff(offsets)
    meta = {
        "kind": "dataset",
        "format": FORMAT,
        "source": raw.source,
        "protocol": asdict(protocol),
        "n_users": int(len(kept_users)),
        "n_items": int(n_items),
        "n_interactions": int(len(flat)),
        "splits": {
            "train_targets": int((lengths - 3).sum()),
            "valid_targets": int(len(lengths)),
            "test_targets": int(len(lengths)),
        },
        "buckets": _bucket_summary(table, "bucket", range(1, protocol.buckets + 1)),
        "groups": _bucket_summary(table, "group", GROUPS),
        "input_hashes": raw.input_hashes,
        "item_hash": item_hash,
        "dataset_id": _dataset_id(item_hash, offsets, flat),
    }
    return Dataset(table, users[kept_users].to_numpy(dtype=object), offsets, flat, meta)


def _bucket_summary(table: pd.DataFrame, col: str, labels) -> list[dict]:
    total = max(int(table["freq"].sum()), 1)
    out = []
    for label in labels:
        f = table.loc[table[col] == label, "freq"]
        out.append(
            {
                "name": label if isinstance(label, str) else int(label),
                "items": int(len(f)),
                "min_freq": int(f.min()) if len(f) else None,
                "max_freq": int(f.max()) if len(f) else None,
                "mass": round(float(f.sum()) / total, 4),
            }
        )
    return out


def write_dataset(ds: Dataset, out: str | Path) -> Path:
    """Write the artifact atomically to `out` and return its path."""
    with atomic_dir(out) as tmp:
        pq.write_table(pa.Table.from_pandas(ds.items, preserve_index=False), tmp / "items.parquet")
        seqs = pa.table(
            {
                "user": pa.array(ds.users.astype(str), pa.string()),
                "items": pa.ListArray.from_arrays(pa.array(ds.offsets.astype(np.int32)), pa.array(ds.flat, pa.int32())),
            }
        )
        pq.write_table(seqs, tmp / "sequences.parquet")
        write_json(tmp / META, ds.meta)
    ds.path = Path(out)
    return ds.path


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset artifact and check it is whole and consistent."""
    path = Path(path)
    meta = read_meta(path, "dataset")
    if meta.get("format") != FORMAT:
        raise PadError(f"{path / META}: format {meta.get('format')!r}, this pad reads {FORMAT!r}")
    for name in ("items.parquet", "sequences.parquet"):
        if not (path / name).is_file():
            raise PadError(f"{path / name}: missing from the dataset artifact")
    items = pq.read_table(path / "items.parquet").to_pandas()
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise PadError(f"{path / 'items.parquet'}: missing column(s) {missing}")
    n = len(items)
    if not np.array_equal(items["item_idx"].to_numpy(), np.arange(1, n + 1)):
        raise PadError(f"{path / 'items.parquet'}: column 'item_idx' must be 1..{n} in order")
    seqs = pq.read_table(path / "sequences.parquet")
    col = seqs.column("items").combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    flat = col.values.to_numpy().astype(np.int32)
    offsets = offsets - offsets[0]
    if len(flat) and (flat.min() < 1 or flat.max() > n):
        raise PadError(f"{path / 'sequences.parquet'}: item_idx outside 1..{n}")
    short = np.diff(offsets) < 3
    if short.any():
        raise PadError(f"{path / 'sequences.parquet'} row {int(short.argmax())}: fewer than 3 items")
    for key, value in (("n_items", n), ("n_users", len(seqs)), ("n_interactions", len(flat))):
        if meta.get(key) != value:
            raise PadError(f"{path / META}: field {key!r} is {meta.get(key)}, the files hold {value}")
    users = seqs.column("user").to_numpy(zero_copy_only=False).astype(object)
    return Dataset(items, users, offsets, flat, meta, path)


def summary(ds: Dataset) -> str:
    """A one-screen text summary of a dataset artifact."""
    m = ds.meta
    lines = [
        f"source        {m['source']}",
        f"users         {m['n_users']:,}",
        f"items         {m['n_items']:,}",
        f"interactions  {m['n_interactions']:,}",
        f"splits        train {m['splits']['train_targets']:,} / valid {m['splits']['valid_targets']:,}"
        f" / test {m['splits']['test_targets']:,} targets",
        f"protocol      {json.dumps(m['protocol'])}",
        "buckets       (1 = warmest; equal training-interaction mass)",
    ]
    for b in m["buckets"] + m["groups"]:
        if b["items"]:
            lines.append(
                f"  {str(b['name']):>6}  {b['items']:>7,} items  freq {b['min_freq']:>5}..{b['max_freq']:<6}"
                f" mass {b['mass']:.3f}"
            )
    return "\n".join(lines)
