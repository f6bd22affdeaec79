"""The text artifact: one frozen embedding per item (phase 0 of PAD).

Files of the artifact folder:
- `embeddings.npy`: [n_items + 1, dim], row 0 = padding (zeros), row i = item_idx i;
  float16 (default; half the disk and memory) or float32.
- `meta.json`: kind "text", encoder, model, dim, dtype, the dataset's item_hash and
  dataset_id, and `text_hash` (item texts + encoder settings + dtype), the key of
  reuse: the same hash means the same table.

A shard (`I/N`, I from 0) covers a contiguous slice of item rows and is an
artifact of kind "text-shard" holding only its rows; `merge_shards` joins all N
of them into the full artifact. The table is written incrementally into a
memory-mapped `.npy`, so an item set of any size needs memory for one batch only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from padcore.artifacts import META, atomic_dir, meta_field, read_meta, write_json
from padcore.dataset import Dataset, load_dataset
from padcore.download import data_home
from padcore.encoders import Encoder, EncoderOptions, check_name, resolve, resolve_device
from padcore.errors import PadError
from padcore.options import DEVICE_PATTERN, check_options, option

FORMAT = "pad.text/1"
EMBEDDINGS = "embeddings.npy"
DTYPES = ("float16", "float32")
ON_EMPTY = ("placeholder", "fail")
COPY_ROWS = 1 << 16  # rows per chunk when merging shards


@dataclass(frozen=True)
class EmbedConfig:
    """Settings of the embed step."""

    encoder: str = option("minilm", "minilm (offline, 384-d) | llm2vec (the paper's, GPU) | hf:<model-or-path>")
    batch_size: int = option(64, "texts per batch", low=1)
    device: str = option("auto", "auto: cuda when present | cpu | cuda | cuda:N", pattern=DEVICE_PATTERN)
    dtype: str = option("float16", "stored precision", choices=DTYPES)
    shard: str = option("", "I/N: embed only the I-th (from 0) of N contiguous item slices; empty = all items")
    on_empty: str = option("placeholder", "an item without text: embed `placeholder` (counted in meta.json), or "
                           "fail", choices=ON_EMPTY)
    placeholder: str = option("(no text)", "text embedded for items without one")
    cache: bool = option(True, "reuse a matching table from $PAD_DATA_HOME/text-cache, and add new ones to it")
    options: EncoderOptions = field(default_factory=EncoderOptions)

    def __post_init__(self) -> None:
        check_options(self, "embed")
        check_name(self.encoder)
        Shard.parse(self.shard)
        if not self.placeholder.strip():
            raise PadError("embed option 'placeholder' is empty; expected a text")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: a contiguous slice of the item rows."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> "Shard | None":
        """`I/N` as a Shard; empty = no shard (all items)."""
        if not spec:
            return None
        try:
            index, count = (int(x) for x in spec.split("/"))
            valid = 0 <= index < count
        except ValueError:
            valid = False
        if not valid:
            raise PadError(f"embed option 'shard' is {spec!r}; allowed: I/N with 0 <= I < N, e.g. 0/4 for the first "
                           "of 4 shards")
        return cls(index, count)

    def rows(self, n_items: int) -> tuple[int, int]:
        """The item_idx range [start, stop) of this shard; sizes differ by at most one."""
        return 1 + self.index * n_items // self.count, 1 + (self.index + 1) * n_items // self.count

    def as_dict(self, n_items: int) -> dict:
        start, stop = self.rows(n_items)
        return {"index": self.index, "count": self.count, "start": start, "stop": stop}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def item_texts(ds: Dataset, on_empty: str, placeholder: str) -> tuple[list[str], np.ndarray]:
    """The texts to embed, in item_idx order, and the item_idx of those that had none."""
    raw = ds.items["text"]
    empty = (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
    missing = ds.items["item_idx"].to_numpy()[empty]
    if len(missing) and on_empty == "fail":
        row = int(np.argmax(empty))
        where = ds.path / "items.parquet" if ds.path else "items"
        raise PadError(
            f"{where} row {row}: item {ds.items['item'].iloc[row]!r} (item_idx {missing[0]}) has no text "
            f"(field 'text'); {len(missing)} item(s) without text; use on_empty=placeholder to embed a placeholder"
        )
    texts = np.where(empty, placeholder, raw.astype(str).to_numpy(dtype=object)).tolist()
    return texts, missing


def text_hash(item_hash: str, settings: dict, dtype: str, placeholder: str | None) -> str:
    """The key of a text table: the item texts, what embeds them and how it is stored."""
    key = {"format": FORMAT, "item_hash": item_hash, "encoder": settings, "dtype": dtype, "placeholder": placeholder}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    return data_home() / "text-cache"


def embed_dataset(dataset: str | Path | Dataset, out: str | Path, cfg: EmbedConfig = EmbedConfig()) -> dict:
    """Embed the item texts of `dataset` (or one shard of them) into a text artifact at `out`."""
    spec = resolve(cfg.encoder, cfg.options)  # settings first: a typo fails before any data is read
    shard = Shard.parse(cfg.shard)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    texts, missing = item_texts(ds, cfg.on_empty, cfg.placeholder)
    n = ds.n_items
    start, stop = shard.rows(n) if shard else (1, n + 1)
    key = text_hash(ds.item_hash, spec.settings(), cfg.dtype, cfg.placeholder if len(missing) else None)
    missing_here = missing[(missing >= start) & (missing < stop)]
    what = f"shard {shard} (items {start}..{stop - 1})" if shard else f"{n:,} items"

    existing = _matching(Path(out), key, shard, n)
    if existing is not None:
        print(f"[embed] {out} already holds {what} for these texts and settings; skipped", flush=True)
        return existing
    if shard is None and cfg.cache:
        reused = _reuse_from_cache(key, Path(out))
        if reused is not None:
            return reused

    device = resolve_device(cfg.device)
    print(f"[embed] {what} with {spec.name} ({spec.model}) on {device}", flush=True)
    encoder = spec.load(device)
    offset = 0 if shard else 1  # the table row of item `start`
    with atomic_dir(out) as tmp:
        table = new_table(tmp / EMBEDDINGS, cfg.dtype, (stop - start + offset, encoder.dim))
        table[:offset] = 0
        seconds = encode_into(table, offset, texts[start - 1 : stop - 1], start, encoder, cfg.batch_size)
        table.flush()
        del table
        meta = {
            "kind": "text-shard" if shard else "text",
            "format": FORMAT,
            "encoder": spec.name,
            "model": spec.model,
            "dim": encoder.dim,
            "dtype": cfg.dtype,
            "rows": stop - start + offset,
            "n_items": n,
            "items": stop - start,
            "item_hash": ds.item_hash,
            "dataset_id": ds.dataset_id,
            "text_hash": key,
            "settings": spec.settings(),
            "empty_texts": int(len(missing_here)),
            "empty_items": missing_here[:20].tolist(),
            "placeholder": cfg.placeholder if len(missing) else None,
            "device": device,
            "batch_size": cfg.batch_size,
            "items_per_second": round((stop - start) / max(seconds, 1e-9), 1),
            "wall_seconds": round(seconds, 2),
        }
        if shard:
            meta["shard"] = shard.as_dict(n)
        write_json(tmp / META, meta)
    print(f"[embed] wrote {out}: {meta['rows']:,} x {encoder.dim} {cfg.dtype}, {meta['items_per_second']:,.1f} items/s", flush=True)
    if len(missing_here):
        print(f"[embed] {len(missing_here)} item(s) without text got the placeholder {cfg.placeholder!r}", flush=True)
    if shard is None and cfg.cache:
        _store_in_cache(Path(out), key)
    return meta


def new_table(path: Path, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """A `.npy` file of `shape`, memory-mapped for writing, with its disk space reserved.

    A memory map writes into a sparse file: on a full disk its pages would fail
    one by one, each a SIGBUS that kills the process. Reserved first, the space
    is there, or an OSError (no space) says so before any work.
    """
    table = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    with open(path, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return table


def encode_into(
    table: np.ndarray, offset: int, texts: Sequence[str], first_item: int, encoder: Encoder, batch_size: int
) -> float:
    """Fill table[offset + i] with the vector of texts[i]; returns the seconds spent.

    Texts go longest first in batches of similar length, so padding stays small
    and an out-of-memory batch shows up at the start, not after hours.
    """
    order = np.argsort([-len(t) for t in texts], kind="stable")
    t0 = time.perf_counter()
    with tqdm(total=len(texts), unit="item", desc="embed", mininterval=1.0) as bar:
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            vectors = encoder.encode([texts[j] for j in idx])
            if vectors.shape != (len(idx), table.shape[1]):
                raise PadError(f"encoder returned shape {vectors.shape}, expected {(len(idx), table.shape[1])}")
            with np.errstate(over="ignore"):  # overflow is reported below, per item
                stored = vectors.astype(table.dtype)
            bad = ~np.isfinite(stored).all(axis=1)
            if bad.any():
                hint = "; use dtype float32" if np.isfinite(vectors[bad]).all() else ""
                raise PadError(f"item_idx {first_item + int(idx[bad.argmax()])}: non-finite embedding in {table.dtype}{hint}")
            table[offset + idx] = stored
            bar.update(len(idx))
    return time.perf_counter() - t0


def read_text_meta(path: str | Path, kind: str = "text") -> dict:
    """meta.json of a text artifact (or shard) at `path`, checked for kind, format and the fields read from it."""
    hints = {"text-shard": "; join the shards with `pad embed-merge` first", "text": "; it is already whole"}
    meta = read_meta(path, kind, hints)
    where = Path(path) / META
    if meta.get("format") != FORMAT:
        raise PadError(f"{where}: format {meta.get('format')!r}, this pad reads {FORMAT!r}")
    for name, kind_ in (("rows", int), ("dim", int), ("item_hash", str)):
        meta_field(meta, name, kind_, where)
    if meta.get("dtype") not in DTYPES:
        raise PadError(f"{where}: field 'dtype' is {meta.get('dtype')!r}; expected one of {list(DTYPES)}")
    return meta


def _open_table(path: Path, meta: dict) -> np.ndarray:
    """embeddings.npy memory-mapped read-only, checked against its meta."""
    file = path / EMBEDDINGS
    if not file.is_file():
        raise PadError(f"{file}: missing from the text artifact")
    try:
        table = np.load(file, mmap_mode="r")
    except Exception as exc:  # noqa: BLE001  (numpy parses the header with Python's tokenizer: any error means a bad file)
        raise PadError(f"{file}: not a readable .npy table ({type(exc).__name__}: {exc})") from exc
    expected = (meta["rows"], meta["dim"])
    if table.shape != expected or table.dtype != np.dtype(meta["dtype"]):
        raise PadError(f"{file}: holds {table.shape} {table.dtype}, {path / META} says {expected} {meta['dtype']}")
    return table


def load_text(path: str | Path, dataset: str | Path | Dataset) -> np.ndarray:
    """The item text table of `path` as float32 [n_items + 1, dim], checked against `dataset`."""
    path = Path(path)
    meta = read_text_meta(path)
    ds_meta = dataset.meta if isinstance(dataset, Dataset) else load_dataset(dataset).meta
    if meta["item_hash"] != ds_meta["item_hash"]:
        raise PadError(
            f"{path / META}: embeds other items (item_hash {meta['item_hash'][:12]}…, the dataset "
            f"{ds_meta['dataset_id']} has {ds_meta['item_hash'][:12]}…); run `pad embed` on this dataset"
        )
    if meta["rows"] != ds_meta["n_items"] + 1:
        raise PadError(f"{path / META}: field 'rows' is {meta['rows']}, expected n_items + 1 = {ds_meta['n_items'] + 1}")
    table = np.array(_open_table(path, meta), dtype=np.float32)  # in memory and writable, whatever the stored dtype
    if table[0].any():
        raise PadError(f"{path / EMBEDDINGS} row 0: the padding row must be zeros")
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        raise PadError(f"{path / EMBEDDINGS} row {int(np.argmin(finite))}: holds NaN or infinite values")
    return table


def _matching(out: Path, key: str, shard: Shard | None, n_items: int) -> dict | None:
    """The meta of `out` if it already is this very table (same hash, same shard), else None."""
    try:
        meta = read_text_meta(out, "text-shard" if shard else "text")
        _open_table(out, meta)
    except PadError:
        return None
    same_shard = meta.get("shard") == (shard.as_dict(n_items) if shard else None)
    return meta if meta.get("text_hash") == key and same_shard else None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when on one file system (tables are written once, never in place), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _reuse_from_cache(key: str, out: Path) -> dict | None:
    entry = cache_dir() / key
    if _matching(entry, key, None, 0) is None:
        return None
    meta = {**read_text_meta(entry), "reused_from": str(entry)}
    with atomic_dir(out) as tmp:
        _link_or_copy(entry / EMBEDDINGS, tmp / EMBEDDINGS)
        write_json(tmp / META, meta)
    print(f"[embed] reused {entry} (same item texts and encoder settings) -> {out}", flush=True)
    return meta


def _store_in_cache(out: Path, key: str) -> None:
    """Add a finished table to the cache; a cache that cannot be written is only a warning."""
    entry = cache_dir() / key
    if _matching(entry, key, None, 0) is not None:
        return
    try:
        with atomic_dir(entry) as tmp:
            _link_or_copy(out / EMBEDDINGS, tmp / EMBEDDINGS)
            shutil.copy2(out / META, tmp / META)
    except OSError as exc:
        print(f"[embed] warning: could not add the table to the cache {entry} ({exc})", flush=True)


def merge_shards(parts: Sequence[str | Path], out: str | Path, cache: bool = True) -> dict:
    """Join the N shard artifacts of one table into the full text artifact at `out`."""
    if not parts:
        raise PadError("embed-merge: no shard folders given")
    metas = [read_text_meta(p, "text-shard") for p in parts]
    first = metas[0]
    for p, m in zip(parts, metas):
        if m.get("text_hash") != first.get("text_hash") or m["shard"]["count"] != first["shard"]["count"]:
            raise PadError(
                f"{Path(p) / META}: shard {m['shard']['index']}/{m['shard']['count']} of another table than "
                f"{Path(parts[0]) / META} (field 'text_hash' or shard count differs)"
            )
    count, n = first["shard"]["count"], first["n_items"]
    seen = Counter(m["shard"]["index"] for m in metas)
    doubled = sorted(i for i, c in seen.items() if c > 1)
    if doubled:
        names = [str(p) for p, m in zip(parts, metas) if m["shard"]["index"] in doubled]
        raise PadError(f"embed-merge: shard(s) {[f'{i}/{count}' for i in doubled]} given more than once: {names}")
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        raise PadError(f"embed-merge: shard(s) {missing} missing; got {len(parts)} of {count}")

    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        table = new_table(tmp / EMBEDDINGS, first["dtype"], (n + 1, first["dim"]))
        table[0] = 0
        for p, m in sorted(zip(parts, metas), key=lambda pm: pm[1]["shard"]["index"]):
            start, stop = Shard(m["shard"]["index"], count).rows(n)
            if (m["shard"]["start"], m["shard"]["stop"]) != (start, stop):
                raise PadError(f"{Path(p) / META}: field 'shard' covers {m['shard']['start']}..{m['shard']['stop']}, expected {start}..{stop}")
            part = _open_table(Path(p), m)
            for i in range(0, stop - start, COPY_ROWS):
                table[start + i : start + min(i + COPY_ROWS, stop - start)] = part[i : i + COPY_ROWS]
        table.flush()
        del table
        drop = ("shard", "items_per_second", "wall_seconds", "device", "batch_size")
        meta = {k: v for k, v in first.items() if k not in drop}
        meta.update(kind="text", rows=n + 1, items=n, shards=count, wall_seconds=round(time.perf_counter() - t0, 2))
        meta["empty_texts"] = sum(m["empty_texts"] for m in metas)
        meta["empty_items"] = sorted(i for m in metas for i in m["empty_items"])[:20]
        write_json(tmp / META, meta)
    print(f"[embed-merge] joined {count} shard(s) into {out}: {n + 1:,} x {first['dim']} {first['dtype']}", flush=True)
    if cache:
        _store_in_cache(Path(out), meta["text_hash"])
    return meta
