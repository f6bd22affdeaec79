"""Source adapters: each turns one kind of raw data into `RawData`.

`load_source(spec)` picks the adapter by the spec's prefix: `prime_pantry`,
`amazon2018:<Category>`, `mind[:large|small]`, `files:<folder-or-gs://prefix>`.

The frames' index holds each row's number in its file, for error messages:
the line number for CSV, TSV and JSON lines (a header is line 1), the 1-based
row for Parquet.

The public releases (amazon2018, mind) are cleaned the way the paper's own
release was made: items without a title, repeated records of an item (the
first is kept) and interactions with items that have no titled record are
dropped, and the counts printed. `prime_pantry` and `files:` are strict: each
of these is an error naming the file and row.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import gzip
import hashlib
import json
import re
import tempfile
import zlib
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from padcore.artifacts import sha256_file
from padcore.dataset import RawData, parse_as_of
from padcore.download import data_home, extract, fetch, gcs_blobs, gcs_download, gcs_list
from padcore.errors import PadError

PRIME_PANTRY_URL = "https://raw.githubusercontent.com/Applied-Machine-Learning-Lab/PAD/main/dataset/{name}"
PRIME_PANTRY_FILES = {
    "Prime_Pantry_cleaned_history.csv": "9087dcb1c800b1270840fa7f5a037177fcb485e48c12aa04296203476fd69485",
    "Prime_Pantry_fre.csv": "32a624102f826e37ced14924650415390bc88b3af543541740f0612e709ac678",
    "metadata_Prime_Pantry.csv": "539a936c75d982305eb82b28f8f8e4a85cf88c002b492045d26e4f86502c85d0",
}
AMAZON2018_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
MIND_URL = "https://mind201910small.blob.core.windows.net/release/MIND{variant}_train.zip"
MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
POSITIVE_RATING = 3  # ratings above this are positives (the paper's rule for 1-5 stars)
FILES_TABLES = {"interactions": ("user", "item", "timestamp"), "items": ("item", "text")}
PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


# ---------------------------------------------------------------- readers


@contextlib.contextmanager
def _progress(path: Path) -> Iterator:
    """Open `path` for reading with a progress bar over its bytes."""
    with open(path, "rb") as f, tqdm.wrapattr(f, "read", total=path.stat().st_size, desc=f"read {path.name}", leave=False) as w:
        yield w


def _require(path: Path, name: str) -> None:
    if not path.is_file():
        raise PadError(f"{name}: file not found")


def _read_csv(path: Path, name: str, *, header: bool, **kwargs) -> pd.DataFrame:
    """Read a delimited text file; only empty fields are missing values."""
    _require(path, name)
    try:
        with _progress(path) as f:
            df = pd.read_csv(f, header=0 if header else None, keep_default_na=False, na_values=[""], **kwargs)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise PadError(f"{name}: malformed ({exc})") from exc
    df.index = pd.RangeIndex(1 + header, len(df) + 1 + header)
    return df


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


# what a Parquet column may hold, by name (an all-empty column, of Arrow's null type, is reported row by row later)
PARQUET_TYPES: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "user": (lambda t: _is_text(t) or pa.types.is_integer(t), "text or whole numbers"),
    "item": (lambda t: _is_text(t) or pa.types.is_integer(t), "text or whole numbers"),
    "text": (_is_text, "text"),
    "timestamp": (lambda t: _is_text(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
                  or pa.types.is_timestamp(t) or pa.types.is_date(t), "numbers, dates or date texts"),
    "rating": (lambda t: _is_text(t) or pa.types.is_integer(t) or pa.types.is_floating(t), "numbers"),
}


def _read_parquet(path: Path, name: str, columns: list[str]) -> pd.DataFrame:
    _require(path, name)
    print(f"[preprocess] reading {name}", flush=True)
    try:
        have = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in columns if c in have]).replace_schema_metadata(None)
        table.validate(full=True)  # text that is not UTF-8, say: Parquet does not check what it reads
        # dictionary-encoded (categorical) columns as their plain values
        table = pa.table({c: table[c].cast(table[c].type.value_type) if pa.types.is_dictionary(table[c].type)
                          else table[c] for c in table.column_names})
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # the last: column names that are not UTF-8
        raise PadError(f"{name}: not a readable Parquet file ({exc})") from exc
    for column in table.column_names:
        ok, expected = PARQUET_TYPES[column]
        if not (ok(table[column].type) or pa.types.is_null(table[column].type)):
            raise PadError(f"{name}: column {column!r} holds {table[column].type}; expected {expected}")
    df = table.to_pandas()
    df.index = pd.RangeIndex(1, len(df) + 1)
    return df


def read_table(path: Path, name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV (ids and text as strings) or Parquet table and check its columns."""
    wanted = [*required, *optional]
    if path.suffix == ".parquet":
        df = _read_parquet(path, name, wanted)
    else:
        text = {c: str for c in ("user", "item", "text") if c in wanted}
        df = _read_csv(path, name, header=True, dtype=text)  # no usecols: with it pandas accepts rows with extra fields
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise PadError(f"{name}: missing column(s) {missing}; expected columns {list(wanted)}")
    return df[[c for c in wanted if c in df.columns]]


def _numeric(values: pd.Series, name: str, field: str) -> pd.Series:
    """`values` as numbers; an error names the first row that is not one."""
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna()
    if bad.any():
        row = values.index[bad.to_numpy().argmax()]
        raise PadError(f"{name} row {row}: field {field!r} is {values[row]!r}, expected a number")
    return num


def _positives(inter: pd.DataFrame, name: str) -> pd.DataFrame:
    """Keep interactions rated above POSITIVE_RATING."""
    keep = (_numeric(inter["rating"], name, "rating") > POSITIVE_RATING).to_numpy()
    print(f"[preprocess] {int(keep.sum()):,} of {len(inter):,} ratings are > {POSITIVE_RATING} (positives)", flush=True)
    return inter.loc[keep, ["user", "item", "timestamp"]]


def _clean_release(inter: pd.DataFrame, items: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop what a public release holds that the protocol cannot use, and say how much."""
    text = items["text"].fillna("").astype(str).str.strip()
    titled = items.assign(text=text)[(text != "").to_numpy()]
    repeated = titled["item"].duplicated().to_numpy()
    titled = titled[~repeated]
    known = inter["item"].isin(titled["item"]).to_numpy()
    print(
        f"[preprocess] {source}: dropped {len(items) - len(titled) - int(repeated.sum()):,} item records without a title, "
        f"{int(repeated.sum()):,} repeated item records and {int((~known).sum()):,} interactions with untitled items",
        flush=True,
    )
    return inter[known], titled


def file_hashes(*paths: Path) -> dict[str, str]:
    """SHA-256 of each input file, keyed by file name, for the dataset's meta.json."""
    return {Path(p).name: sha256_file(p) for p in paths}


# ---------------------------------------------------------------- prime_pantry


def prime_pantry(arg: str = "") -> RawData:
    """The paper's Prime Pantry release: histories as Python-list strings, titles by ASIN."""
    folder = data_home() / "prime_pantry"
    paths = {
        name: fetch(PRIME_PANTRY_URL.format(name=name), folder / name, sha256)
        for name, sha256 in PRIME_PANTRY_FILES.items()
    }
    hist_path = paths["Prime_Pantry_cleaned_history.csv"]
    meta_path = paths["metadata_Prime_Pantry.csv"]
    hist = _read_csv(hist_path, str(hist_path), header=True, dtype=str)
    if "user" not in hist.columns or "history" not in hist.columns:
        raise PadError(f"{hist_path}: expected columns 'user,history', got {list(hist.columns)}")
    dup = hist["user"].duplicated().to_numpy()
    if dup.any():
        row = hist.index[dup.argmax()]
        raise PadError(f"{hist_path} row {row}: duplicate user {hist['user'][row]!r}")
    users, items, positions = [], [], []
    for row, user, history in zip(hist.index, hist["user"], hist["history"]):
        try:
            seq = ast.literal_eval(history)
        except (ValueError, SyntaxError) as exc:
            raise PadError(f"{hist_path} row {row}: field 'history' is not a list of item ids ({exc})") from exc
        if not isinstance(seq, list):
            raise PadError(f"{hist_path} row {row}: field 'history' is not a list of item ids")
        users.extend([user] * len(seq))
        items.extend(map(str, seq))
        positions.extend(range(len(seq)))
    interactions = pd.DataFrame({"user": users, "item": items, "timestamp": np.asarray(positions, dtype=np.int64)})
    titles = _read_csv(meta_path, str(meta_path), header=True, dtype=str)
    if "asin" not in titles.columns or "title" not in titles.columns:
        raise PadError(f"{meta_path}: expected columns 'asin,title', got {list(titles.columns)}")
    titles = titles.rename(columns={"asin": "item", "title": "text"})
    return RawData(
        interactions=interactions,
        items=titles[["item", "text"]],
        interactions_file=str(hist_path),
        items_file=str(meta_path),
        source="prime_pantry",
        input_hashes={name: PRIME_PANTRY_FILES[name] for name in (hist_path.name, meta_path.name)},
    )


# ---------------------------------------------------------------- amazon2018


def _json_record(line: str, name: str, row: int) -> dict:
    """One metadata line: strict JSON, or the Python-literal form some release lines use."""
    try:
        rec = json.loads(line)
    except RecursionError as exc:
        raise PadError(f"{name} row {row}: nested too deeply to read") from exc
    except json.JSONDecodeError:
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            raise PadError(f"{name} row {row}: neither JSON nor a Python dict literal ({exc})") from exc
    if not isinstance(rec, dict):
        raise PadError(f"{name} row {row}: expected an object with fields 'asin' and 'title'")
    return rec


def _amazon_titles(path: Path) -> pd.DataFrame:
    """asin and title of each record of a metadata JSON-lines gz file."""
    _require(path, str(path))
    rows, asins, titles = [], [], []
    try:
        with _progress(path) as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
            for row, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                rec = _json_record(line, str(path), row)
                if not rec.get("asin"):
                    raise PadError(f"{path} row {row}: missing field 'asin'")
                rows.append(row)
                asins.append(str(rec["asin"]))
                title = rec.get("title")
                titles.append(title if isinstance(title, str) else None)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise PadError(f"{path}: not a readable gzip text file ({exc})") from exc
    return pd.DataFrame({"item": asins, "text": titles}, index=rows)


def amazon2018(category: str) -> RawData:
    """Amazon Review Data 2018, one category: ratings CSV plus metadata titles."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", category):
        raise PadError(f"source 'amazon2018:{category}': expected a category name, e.g. amazon2018:Electronics")
    folder = data_home() / "amazon2018"
    ratings_path = fetch(f"{AMAZON2018_URL}/categoryFilesSmall/{category}.csv", folder / f"{category}.csv")
    meta_path = fetch(f"{AMAZON2018_URL}/metaFiles2/meta_{category}.json.gz", folder / f"meta_{category}.json.gz")
    ratings = _read_csv(
        ratings_path, str(ratings_path), header=False, names=["item", "user", "rating", "timestamp"], dtype=str
    )
    inter, items = _clean_release(_positives(ratings, str(ratings_path)), _amazon_titles(meta_path), "amazon2018")
    return RawData(
        interactions=inter,
        items=items,
        interactions_file=str(ratings_path),
        items_file=str(meta_path),
        source=f"amazon2018:{category}",
        input_hashes=file_hashes(ratings_path, meta_path),
    )


# ---------------------------------------------------------------- mind


def _tokens(values: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Split space-separated fields; returns each token's position in `values` and the tokens."""
    lists = pc.ascii_split_whitespace(pa.array(values.fillna(""), pa.large_string()))
    parent = pc.list_parent_indices(lists).to_numpy()
    flat = pc.list_flatten(lists)
    nonempty = pc.not_equal(flat, "")
    return parent[nonempty.to_numpy(zero_copy_only=False)], flat.filter(nonempty)


def _mind_clicks(b: pd.DataFrame, name: str) -> pd.DataFrame:
    """Chronological clicks: the history (before the log) then clicked impressions by time."""
    for field in ("user", "time", "impressions"):
        empty = b[field].isna().to_numpy()
        if empty.any():
            raise PadError(f"{name} row {b.index[empty.argmax()]}: empty field {field!r}")
    time = pd.to_datetime(b["time"], format=MIND_TIME_FORMAT, errors="coerce")
    bad = time.isna().to_numpy()
    if bad.any():
        row = b.index[bad.argmax()]
        raise PadError(f"{name} row {row}: field 'time' is {b['time'][row]!r}, expected e.g. 11/15/2019 8:55:22 AM")
    b = b.assign(ts=(time - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).sort_values("ts", kind="stable")
    # A user's history is the same on each of their rows: take the earliest row's.
    first = b[~b["user"].duplicated().to_numpy()]
    h_parent, h_items = _tokens(first["history"])
    i_parent, tokens = _tokens(b["impressions"])
    clicked = pc.ends_with(tokens, "-1")
    valid = pc.or_(clicked, pc.ends_with(tokens, "-0")).to_numpy(zero_copy_only=False)
    if not valid.all():
        bad = int(np.argmax(~valid))
        raise PadError(
            f"{name} row {b.index[i_parent[bad]]}: field 'impressions' token {tokens[bad].as_py()!r}, "
            "expected <news id>-1 (clicked) or <news id>-0"
        )
    clicked_np = clicked.to_numpy(zero_copy_only=False)
    c_parent = i_parent[clicked_np]
    c_items = pc.utf8_slice_codeunits(tokens.filter(clicked), 0, -2)
    history = pd.DataFrame(
        {
            "user": first["user"].to_numpy()[h_parent],
            "item": h_items.to_pandas(),
            "timestamp": first["ts"].to_numpy()[h_parent] - 1,  # just before the user's first impression
        },
    ).set_axis(first.index[h_parent])
    clicks = pd.DataFrame(
        {"user": b["user"].to_numpy()[c_parent], "item": c_items.to_pandas(), "timestamp": b["ts"].to_numpy()[c_parent]}
    ).set_axis(b.index[c_parent])
    return pd.concat([history, clicks])


def mind(variant: str = "") -> RawData:
    """MIND (Microsoft News) training log: behaviors.tsv + news.tsv; text is the news title."""
    variant = variant or "large"
    if variant not in ("large", "small"):
        raise PadError(f"source 'mind:{variant}': expected mind, mind:large or mind:small")
    folder = data_home() / "mind" / variant
    behaviors_path, news_path = folder / "behaviors.tsv", folder / "news.tsv"
    if not (behaviors_path.is_file() and news_path.is_file()):
        archive = fetch(MIND_URL.format(variant=variant), folder / f"MIND{variant}_train.zip")
        extract(archive, ["behaviors.tsv", "news.tsv"], folder)
    tsv = dict(header=False, sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    behaviors = _read_csv(
        behaviors_path, str(behaviors_path), names=["impression", "user", "time", "history", "impressions"], **tsv
    )
    news_columns = ["item", "category", "subcategory", "text", "abstract", "url", "title_entities", "abstract_entities"]
    news = _read_csv(news_path, str(news_path), names=news_columns, **tsv)[["item", "text"]]
    empty_id = news["item"].isna().to_numpy()
    if empty_id.any():
        raise PadError(f"{news_path} row {news.index[empty_id.argmax()]}: empty field 'news id'")
    inter, items = _clean_release(_mind_clicks(behaviors, str(behaviors_path)), news, "mind")
    return RawData(
        interactions=inter,
        items=items,
        interactions_file=str(behaviors_path),
        items_file=str(news_path),
        source=f"mind:{variant}",
        input_hashes=file_hashes(behaviors_path, news_path),
    )


# ---------------------------------------------------------------- files


def _table_file(folder: Path, location: str, stem: str) -> Path:
    found = [folder / f"{stem}.{ext}" for ext in ("csv", "parquet") if (folder / f"{stem}.{ext}").is_file()]
    if len(found) != 1:
        what = "both" if found else "neither"
        raise PadError(f"{location}: holds {what} of {stem}.csv and {stem}.parquet; expected exactly one")
    return found[0]


def partition_bound(as_of: str | None) -> date | None:
    """The last partition date `as_of` keeps (None: every partition)."""
    if not as_of:
        return None
    when = parse_as_of(as_of)
    return (when if isinstance(when, pd.Timestamp) else pd.Timestamp(when, unit="s", tz="UTC")).date()


def _partition_day(name: str, where: str) -> date:
    m = PARTITION.fullmatch(name)
    if not m:
        raise PadError(f"{where}/{name}: expected only partition folders date=YYYY-MM-DD")
    try:
        return date.fromisoformat(m.group(1))
    except ValueError as exc:
        raise PadError(f"{where}/{name}: not a date ({exc})") from exc


def _partition_files(folder: Path, location: str, as_of: str | None) -> list[Path]:
    """The data files of `folder/interactions/date=YYYY-MM-DD/` partitions up to `as_of`'s date, in date order."""
    root = folder / "interactions"
    last = partition_bound(as_of)
    chosen = []
    for part in sorted(p for p in root.iterdir() if not p.name.startswith((".", "_"))):
        day = _partition_day(part.name, f"{location}/interactions")
        if not part.is_dir():
            raise PadError(f"{location}/interactions/{part.name}: expected only partition folders date=YYYY-MM-DD")
        if last is None or day <= last:
            chosen += sorted(f for f in part.iterdir() if f.suffix in (".csv", ".parquet") and f.is_file())
    if not chosen:
        raise PadError(f"{location}/interactions: no partition data file (*.csv, *.parquet) dated up to "
                       f"{last or 'any date'}")
    return chosen


def _read_partitions(folder: Path, location: str, as_of: str | None) -> tuple[pd.DataFrame, list[Path]]:
    """Interactions from dated partitions, indexed by (file under interactions/, row in that file)."""
    frames = []
    paths = _partition_files(folder, location, as_of)
    for path in paths:
        rel = str(path.relative_to(folder / "interactions"))
        name = f"{location}/interactions/{rel}"
        df = read_table(path, name, FILES_TABLES["interactions"], ("rating",))
        if "rating" in df.columns:
            df = _positives(df, name)
        df.index = pd.MultiIndex.from_arrays([np.full(len(df), rel, dtype=object), df.index])
        frames.append(df)
    print(f"[preprocess] {len(paths)} partition file(s) of {location}/interactions read", flush=True)
    return pd.concat(frames), paths


def _read_files(folder: Path, location: str, as_of: str | None) -> RawData:
    if (folder / "interactions").is_dir():
        inter, paths = _read_partitions(folder, location, as_of)
        inter_file = f"{location}/interactions"
    else:
        path = _table_file(folder, location, "interactions")
        inter_file = f"{location}/{path.name}"
        inter, paths = read_table(path, inter_file, FILES_TABLES["interactions"], ("rating",)), [path]
        if "rating" in inter.columns:
            inter = _positives(inter, inter_file)
    items_path = _table_file(folder, location, "items")
    items = read_table(items_path, f"{location}/{items_path.name}", FILES_TABLES["items"])
    return RawData(
        interactions=inter,
        items=items,
        interactions_file=inter_file,
        items_file=f"{location}/{items_path.name}",
        source=f"files:{location}",
        input_hashes={str(p.relative_to(folder)): sha256_file(p) for p in [*paths, items_path]},
    )


def files(location: str, as_of: str | None = None) -> RawData:
    """Bring-your-own data in a folder or gs:// prefix: items.{csv,parquet} plus interactions.{csv,parquet}
    or dated partitions interactions/date=YYYY-MM-DD/*.{csv,parquet} (those up to `as_of` are read)."""
    location = location.rstrip("/")
    if not location:
        raise PadError("source 'files:': expected a folder, e.g. files:/data/shop or files:gs://bucket/shop")
    if location.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="pad-gcs-") as tmp:
            tables = [f"{stem}.{ext}" for stem in FILES_TABLES for ext in ("csv", "parquet")]
            parts = [n for n in gcs_list(location) if n.startswith("interactions/")]
            gcs_download(location, tables + parts, Path(tmp))
            return _read_files(Path(tmp), location, as_of)
    folder = Path(location).expanduser()
    if not folder.is_dir():
        raise PadError(f"{location}: folder not found (files:<folder> holds interactions.csv|parquet and items.csv|parquet)")
    return _read_files(folder, location, as_of)


# ---------------------------------------------------------------- fingerprint


def _read_by_files(name: str) -> bool:
    """Whether a `files:` object or file (a path relative to the location) is one the source reads."""
    top = name.split("/", 1)[0]
    return name in {f"{stem}.{ext}" for stem in FILES_TABLES for ext in ("csv", "parquet")} or top == "interactions"


def _files_listing(location: str, as_of: str | None) -> list[tuple[str, str]]:
    """(path relative to the location, identity) of every file a `files:` source would read as of `as_of`: size
    and modification time locally, size and generation on GCS (a new generation is a new object version)."""
    location = location.rstrip("/")
    last = partition_bound(as_of)
    if location.startswith("gs://"):
        entries = [(n, f"{b.size}:{b.generation}") for n, b in gcs_blobs(location).items()]
    else:
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise PadError(f"{location}: folder not found (files:<folder> holds interactions.csv|parquet and "
                           "items.csv|parquet)")
        entries = [(str(p.relative_to(folder)), f"{p.stat().st_size}:{p.stat().st_mtime_ns}")
                   for p in sorted(folder.rglob("*")) if p.is_file()]
    kept = []
    for name, identity in entries:
        parts = name.split("/")
        if not _read_by_files(name) or any(p.startswith((".", "_")) for p in parts):
            continue
        if parts[0] == "interactions" and len(parts) > 2:
            if last is not None and _partition_day(parts[1], f"{location}/interactions") > last:
                continue
        kept.append((name, identity))
    return sorted(kept)


def fingerprint(spec: str, as_of: str = "") -> dict:
    """What a source's data is now, cheaply: {"fingerprint": digest, "files": n}. It changes exactly when the data
    the source would read (as of `as_of`) changes, so a step keyed on it is answered from a cache only for
    unchanged data. The public releases are fixed (Prime Pantry by its pinned file hashes, the others by name);
    `files:` is its files' sizes and times (GCS: sizes and generations)."""
    name, _, arg = spec.partition(":")
    if name not in ADAPTERS:
        load_source(spec)  # the same error as preprocess gives
    if as_of:
        parse_as_of(as_of)
    if name == "files":
        if not arg.rstrip("/"):
            raise PadError("source 'files:': expected a folder, e.g. files:/data/shop or files:gs://bucket/shop")
        entries = _files_listing(arg, as_of or None)
        if not entries:
            raise PadError(f"{arg}: holds no items.csv|parquet or interactions file to read")
    elif name == "prime_pantry":
        entries = sorted(PRIME_PANTRY_FILES.items())
    else:
        entries = [(spec, "public release")]
    digest = hashlib.sha256(json.dumps([spec, as_of, entries]).encode()).hexdigest()
    return {"fingerprint": digest, "files": len(entries)}


ADAPTERS: dict[str, Callable[[str], RawData]] = {
    "prime_pantry": prime_pantry,
    "amazon2018": amazon2018,
    "mind": mind,
    "files": files,
}



def load_source(spec: str, as_of: str | None = None) -> RawData:
    """Load raw data named by a source spec such as `prime_pantry` or `files:/data/x`.

    `as_of` prunes the dated partitions of a `files:` source; the interactions
    themselves are cut at `as_of` by `build_dataset`.
    """
    name, _, arg = spec.partition(":")
    if name not in ADAPTERS:
        raise PadError(
            f"unknown source {spec!r}; expected one of: prime_pantry, amazon2018:<Category>, mind[:large|small], "
            "files:<folder or gs://bucket/prefix>"
        )
    if name == "files":
        return files(arg, as_of)
    return ADAPTERS[name](arg)
