"""Top-K recommendations: a model ranks every item after each user's history, as evaluation does.

A `Ranker` is a model ready to rank (its item side computed once) with the source's
item ids. Histories arrive as item ids and are mapped to the model's own item_idx by
id, so a model ranks the users of any dataset; items it never saw are ignored. The
scores are `PadModel.scores` and the order is `padcore.metrics.top_k`: padding and
history excluded, as in `target_ranks`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from padcore.artifacts import read_meta
from padcore.batches import window
from padcore.checkpoint import load_model
from padcore.dataset import Dataset, load_dataset, parse_timestamps
from padcore.errors import PadError
from padcore.experts import PadModel
from padcore.metrics import linear_top_k, top_k
from padcore.store import FORMAT, ITEMS, MANIFEST, verify
from padcore.trainer import autocast, item_block, pick_device

SCHEMA = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float32())])
MAX_CELLS = 2**24  # scores held at once (users x items); bounds memory for any catalogue size


@dataclass
class Users:
    """Histories in a ranker's item space, flat: user u's items are flat[offsets[u]:offsets[u + 1]], oldest first."""

    users: np.ndarray
    offsets: np.ndarray
    flat: np.ndarray
    unknown: int = 0  # interactions with items the model does not know (left out)
    empty: list[str] = field(default_factory=list)  # users left with no known item (not ranked)


@dataclass
class Ranker:
    """A model ready to rank: item side computed once, item ids by item_idx (row 0 = padding)."""

    model: PadModel
    side: tuple
    keys: np.ndarray
    max_len: int
    device: torch.device
    label: str
    freq: np.ndarray | None = None  # training interactions per item_idx (row 0 = padding), where the source has them
    index: pd.Index = field(init=False)
    table: torch.Tensor | None = field(init=False)  # `PadModel.ranking_table`: scores taken a block of items at a time
    by_popularity: np.ndarray | None = field(init=False)  # item_idx by training interactions, most first

    def __post_init__(self) -> None:
        self.index = pd.Index(self.keys[1:].astype(str))
        self.table = self.model.ranking_table(self.side)
        self.by_popularity = None
        if self.freq is not None:
            self.by_popularity = np.lexsort((np.arange(len(self.freq) - 1), -self.freq[1:])) + 1
        rows = self.side[0][0].shape[0]
        if rows != len(self.keys):
            raise PadError(f"{self.label}: the model ranks {rows - 1} items but its item list holds {len(self.keys) - 1}")

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item_idx, training interactions) of the `k` most interacted-with items, ties by item_idx (needs freq)."""
        order = self.by_popularity[:k]
        return order, self.freq[order]

    def to_idx(self, ids) -> np.ndarray:
        """item_idx of each id (1-based), -1 where the model does not know it."""
        idx = self.index.get_indexer(pd.Index(np.asarray(ids, dtype=object).astype(str)))
        return np.where(idx >= 0, idx + 1, -1)

    @torch.no_grad()
    def top_k(self, inputs: torch.Tensor, history: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item_idx [B, k], score [B, k]) for left-padded inputs [B, <= max_len] and history [B, S]."""
        inputs, history = inputs.to(self.device), history.to(self.device)
        with autocast(self.device):
            if self.table is None:
                items, values = top_k(self.model.scores(inputs, self.side), history, k)
            else:
                users = self.model.user_vectors(inputs, self.side)
                items, values = linear_top_k(users, self.table, history, k, item_block(self.device, len(users)))
        return items.cpu().numpy(), values.cpu().numpy()

    def histories(self, users: Sequence[str], sequences: Sequence[Sequence[str]]) -> Users:
        """Item-id histories (oldest first) -> this model's item space, unknown ids left out."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        ids = np.concatenate([np.asarray(s, dtype=object) for s in sequences]) if len(sequences) else np.array([])
        return self._known(np.asarray(users, dtype=object), lengths, self.to_idx(ids))

    def dataset_users(self, ds: Dataset) -> Users:
        """Every user of a dataset with their whole history, matched to this model's items by id."""
        mapping = np.concatenate([[-1], self.to_idx(ds.items["item"].to_numpy())])
        return self._known(ds.users, ds.lengths, mapping[ds.flat])

    def _known(self, users: np.ndarray, lengths: np.ndarray, idx: np.ndarray) -> Users:
        known = idx > 0
        owner = np.repeat(np.arange(len(users)), lengths)
        counts = np.bincount(owner[known], minlength=len(users))
        keep = counts > 0
        offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        return Users(users[keep], offsets, idx[known].astype(np.int32), int((~known).sum()),
                     [str(u) for u in users[~keep]])

    def batches(self, users: Users, batch_users: int = 1024, max_cells: int = MAX_CELLS):
        """(slice, inputs, history) per batch of users, at most `max_cells` scores per batch (unless the scores are
        taken a block of items at a time)."""
        size = batch_users if self.table is not None else max(1, min(batch_users, max_cells // len(self.keys)))
        starts, ends = users.offsets[:-1], users.offsets[1:]
        for lo in range(0, len(users.users), size):
            s, e = starts[lo : lo + size], ends[lo : lo + size]
            longest = int((e - s).max())
            inputs = window(users.flat, s, e, min(self.max_len, longest))
            history = window(users.flat, s, e, longest)
            yield slice(lo, lo + len(s)), torch.from_numpy(inputs), torch.from_numpy(history)


def load_ranker(model_dir: str | Path, keys: np.ndarray, text: np.ndarray | None, device: str = "cpu",
                label: str | None = None, freq: np.ndarray | None = None) -> Ranker:
    """A model artifact with its item ids (`keys[i]` = id of item_idx i, keys[0] unused), text table and
    training frequencies (`freq[i]`, freq[0] unused)."""
    model_dir = Path(model_dir)
    dev = pick_device(device)
    model = load_model(model_dir, text).to(dev).eval()
    config = json.loads((model_dir / "config.json").read_text())
    max_len = int(config.get("max_len") or config["config"]["max_len"])
    with torch.no_grad(), autocast(dev):
        side = model.item_side()
    keys = np.concatenate([[""], np.asarray(keys, dtype=object)[1:]]).astype(object)
    if freq is not None:
        freq = np.concatenate([[0], np.asarray(freq, dtype=np.int64)[1:]])
    return Ranker(model, side, keys, max_len, dev, label or str(model_dir), freq)


def ranker_from_artifacts(model_dir: str | Path, ds: Dataset, text_dir: str | Path | None, device: str = "cpu") -> Ranker:
    """A pipeline model artifact with the dataset it was trained on (and its text artifact, if it has text experts)."""
    meta = read_meta(model_dir, "model")
    if meta.get("item_hash") != ds.item_hash:
        raise PadError(f"{Path(model_dir) / 'meta.json'}: trained on another item set than the dataset {ds.path}; "
                       "give the dataset it was trained on (or a published version, which carries its items)")
    text = None
    if meta.get("text_hash"):
        if text_dir is None:
            raise PadError(f"{model_dir}: this model has text experts; pass the text artifact it was trained with (--text)")
        from padcore.text import load_text, read_text_meta

        if read_text_meta(text_dir).get("text_hash") != meta["text_hash"]:
            raise PadError(f"{text_dir}: not the text table {model_dir} was trained with (text_hash differs)")
        text = load_text(text_dir, ds)
    return load_ranker(model_dir, ds.item_column("item"), text, device, freq=ds.item_column("freq"))


def is_version(path: str | Path) -> bool:
    """Whether `path` is a local folder holding a published version."""
    return not str(path).startswith("gs://") and (Path(path) / MANIFEST).is_file()


def read_version(folder: str | Path) -> dict:
    """The manifest of a local version folder, its files checked."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PadError(f"{folder / MANIFEST}: cannot read the manifest ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise PadError(f"{folder / MANIFEST}: format {manifest.get('format')!r}, this pad reads {FORMAT!r}")
    verify(folder, manifest)
    return manifest


def ranker_from_version(folder: str | Path, device: str = "cpu") -> Ranker:
    """A published version (a local folder) ready to rank; a corrupt or incompatible one is refused."""
    from padcore.text import EMBEDDINGS

    folder = Path(folder)
    manifest = read_version(folder)
    items = pq.read_table(folder / ITEMS).to_pandas()
    if not np.array_equal(items["item_idx"].to_numpy(), np.arange(1, len(items) + 1)):
        raise PadError(f"{folder / ITEMS}: column 'item_idx' must be 1..{len(items)} in order")
    keys = np.concatenate([[""], items["item"].astype(str).to_numpy()]).astype(object)
    freq = None
    if "freq" in items:  # older versions lack it
        freq = items["freq"].to_numpy()
        if not np.issubdtype(freq.dtype, np.integer) or (freq < 0).any():
            raise PadError(f"{folder / ITEMS}: column 'freq' must hold counts (whole numbers, 0 or more)")
        freq = np.concatenate([[0], freq])
    text = None
    if manifest.get("text"):
        text = np.load(folder / "text" / EMBEDDINGS, mmap_mode="r")
        if text.shape[0] != len(keys):
            raise PadError(f"{folder / 'text' / EMBEDDINGS}: {text.shape[0]} rows for {len(keys) - 1} items (+ padding)")
        text = np.array(text, dtype=np.float32)  # a writable copy: torch wraps it
    try:
        return load_ranker(folder / "model", keys, text, device, label=manifest["version"], freq=freq)
    except PadError:
        raise
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise PadError(f"{folder / 'model'}: cannot load the model of version {manifest['version']} ({exc})") from exc


def read_sequences(path: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Users and their item-id histories (oldest first) from a `user,item,timestamp` CSV or Parquet file."""
    from padcore.sources import read_table

    if path.startswith("gs://"):
        from padcore.download import gcs_download

        parent, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="pad-gcs-") as tmp:
            got = gcs_download(parent, [name], Path(tmp))
            if name not in got:
                raise PadError(f"{path}: file not found")
            return read_sequences(str(got[name]))
    df = read_table(Path(path), path, ("user", "item", "timestamp"))
    for col in ("user", "item"):
        empty = df[col].isna().to_numpy()
        if empty.any():
            raise PadError(f"{path} row {df.index[empty.argmax()]}: empty field {col!r}")
    ts, _ = parse_timestamps(df["timestamp"], path)
    code, users = pd.factorize(df["user"].astype(str), sort=False)
    order = np.lexsort((ts, code))  # by user, then time; equal times keep file order
    items = df["item"].astype(str).to_numpy()[order]
    cuts = np.cumsum(np.bincount(code, minlength=len(users)))[:-1]
    return np.asarray(users, dtype=object), np.split(items, cuts)


def write_recommendations(ranker: Ranker, users: Users, out: str | Path, k: int, *, batch_users: int = 1024,
                          max_cells: int = MAX_CELLS, info: dict | None = None) -> int:
    """Rank every user and write `user, rank (1 = best), item, score` rows to the Parquet file `out`.

    Written through a temporary file and a rename; returns the number of rows.
    """
    if k < 1:
        raise PadError(f"k is {k}; expected 1 or more")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"k": k, "model": ranker.label, "users": len(users.users), "unknown_interactions": users.unknown,
            "users_without_known_items": len(users.empty), **(info or {})}
    schema = SCHEMA.with_metadata({"pad": json.dumps(meta)})
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer, tqdm(total=len(users.users), unit="user", desc="recommend",
                                                            mininterval=2.0) as bar:
            for part, inputs, history in ranker.batches(users, batch_users, max_cells):
                items, scores = ranker.top_k(inputs, history, k)
                real = items > 0
                n = real.sum(1)
                table = pa.table({
                    "user": np.repeat(users.users[part].astype(str), n),
                    "rank": np.concatenate([np.arange(1, c + 1, dtype=np.int32) for c in n]),
                    "item": ranker.keys[items[real]].astype(str),
                    "score": scores[real].astype(np.float32),
                }, schema=schema)
                writer.write_table(table)
                rows += len(table)
                bar.update(len(n))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


def recommend(model: str | Path, out: str | Path, *, dataset: str | Path | None = None, text: str | Path | None = None,
              sequences: str | None = None, k: int = 10, device: str = "cpu", batch_users: int = 1024) -> dict:
    """Top-k items per user -> Parquet at `out`; returns a summary.

    `model` is a model artifact (with the `dataset` it was trained on, and `text` for text
    experts) or a published store version (which carries its items and text). Users are
    those of `dataset`, or the histories of the `sequences` file (`user,item,timestamp`).
    """
    if is_version(model):
        ranker = ranker_from_version(model, device)
        ds = load_dataset(dataset) if dataset else None
    else:
        if dataset is None:
            raise PadError(f"{model}: a model artifact needs the dataset it was trained on (--dataset), for its item ids")
        ds = load_dataset(dataset)
        ranker = ranker_from_artifacts(model, ds, text, device)
    if sequences:
        users = ranker.histories(*read_sequences(sequences))
        origin = str(sequences)
    elif ds is not None:
        users = ranker.dataset_users(ds)
        origin = str(ds.path)
    else:
        raise PadError("nothing to rank: give --dataset (its users) or --sequences FILE (user,item,timestamp rows)")
    print(f"[recommend] {len(users.users):,} users of {origin}, top {k} of {len(ranker.keys) - 1:,} items by "
          f"{ranker.label}", flush=True)
    if users.unknown or users.empty:
        print(f"[recommend] left out {users.unknown:,} interactions with items the model does not know; "
              f"{len(users.empty):,} users have no known item and get no recommendations", flush=True)
    rows = write_recommendations(ranker, users, out, k, batch_users=batch_users, info={"users_from": origin})
    print(f"[recommend] wrote {rows:,} rows to {out}", flush=True)
    return {"users": len(users.users), "rows": rows, "k": k, "unknown_interactions": users.unknown,
            "users_without_known_items": len(users.empty)}
