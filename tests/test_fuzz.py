"""Property-based fuzzing of pad's parsers: the `files:` CSV and Parquet readers, the MIND and Amazon adapters, and the
readers of the dataset, text and model artifacts (their meta.json and files).

Random and mutated inputs must give a valid artifact or a PadError naming the file they came from: never another
exception, never a hang. CI runs the `ci` hypothesis profile (fixed seed, bounded examples); a longer run:
`pytest tests/test_fuzz.py --hypothesis-profile fuzz-long` (README, "Development").
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import gzip
import io
import json
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from padcore.errors import PadError

SECONDS = 30  # one example taking longer has hung
PROTOCOL = {"max_len": 4, "min_len": 3, "buckets": 3}


@contextlib.contextmanager
def no_hang(what: str):
    def alarm(signum, frame):
        raise AssertionError(f"{what} still running after {SECONDS} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def valid_or_named(run, *names: str):
    """`run()` returns (a valid artifact), or raises a PadError naming one of `names`; anything else fails."""
    with no_hang(names[0]):
        try:
            result = run()
        except PadError as exc:
            assert any(n in str(exc) for n in names), f"the error names none of {names}: {exc}"
            assert "\n" not in str(exc), f"one line: {exc!r}"
            event("PadError")
            return None
    event("valid artifact")  # --hypothesis-show-statistics: how often each outcome came
    return result


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="pad-fuzz-") as tmp:
        yield Path(tmp)


def preprocess(source: str, out: Path):
    """The preprocess step on `source`, then its artifact read back: what the next step would see."""
    from padcore.dataset import load_dataset
    from padcore.steps import preprocess as step

    step(source, out, **PROTOCOL)
    ds = load_dataset(out)
    assert ds.n_users > 0 and ds.n_items > 0 and (ds.lengths >= 3).all()
    return ds


# ---------------------------------------------------------------- what the generators draw from
#
# Each example is in one of four modes: a valid input; a valid input with a few cells edited (awkward values,
# rows dropped, fields missing or extra); a valid input with a few bytes flipped, inserted, cut or truncated; or
# random rows under a random header. So valid inputs, near misses and garbage all come up in every run.

MODES = st.sampled_from(["valid", "edited", "mutated", "random"])
USERS = [f"u{k}" for k in range(4)]
ITEMS = [f"i{k}" for k in range(5)]
awkward_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
field = st.one_of(
    st.sampled_from(USERS + ITEMS),
    st.integers(-2, 2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "2020-01-01", "2020-13-45T99:00", "nan", "inf", "-0", "1e400", "\"", "a,b", "x\ny",
                     "\t"]),
    awkward_text,
)


@st.composite
def log_rows(draw) -> list[list[str]]:
    """A valid log: every user 3..6 interactions with ITEMS, at times that never go back."""
    rows, t = [], 1_600_000_000
    for user in USERS:
        for _ in range(draw(st.integers(3, 6))):
            t += draw(st.integers(0, 1000))
            rows.append([user, draw(st.sampled_from(ITEMS)), str(t)])
    return rows


@st.composite
def edited(draw, rows: list[list[str]]) -> list[list[str]]:
    """`rows` with one to three edits: a cell replaced, a row dropped, a field cut off or added."""
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(1, 3))):
        if not rows:
            break
        r = draw(st.integers(0, len(rows) - 1))
        how = draw(st.sampled_from(["cell", "drop", "cut", "add"]))
        if how == "cell" and rows[r]:
            rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(field)
        elif how == "drop":
            del rows[r]
        elif how == "cut" and rows[r]:
            rows[r].pop()
        else:
            rows[r].append(draw(field))
    return rows


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """`data` with one to three bytes flipped, inserted or cut, or truncated."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "insert", "cut", "truncate"]))
        if how == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif how == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def delimited(rows: list[list[str]], sep: str, quoted: bool) -> bytes:
    if quoted:
        buf = io.StringIO()
        csv.writer(buf, delimiter=sep).writerows(rows)
        return buf.getvalue().encode()
    return "\n".join(sep.join(r) for r in rows).encode("utf-8", "surrogatepass")


@st.composite
def text_files(draw, tables: dict[str, tuple[list[str] | None, list[list[str]]]], sep: str = ",",
               mode: str | None = None) -> dict[str, bytes]:
    """name -> bytes of delimited text files, from (header or None, valid rows) per file, in one mode for all."""
    mode = mode or draw(MODES)
    out = {}
    for name, (header, rows) in tables.items():
        if mode == "random":
            width = len(rows[0]) if rows else 2
            if header is not None:
                header = draw(st.lists(st.sampled_from([*header, *header, "extra"]), min_size=1, max_size=width + 1))
                width = len(header)
            rows = draw(st.lists(st.lists(field, min_size=width - 1, max_size=width + 1), max_size=25))
        elif mode == "edited" and draw(st.booleans()):
            rows = draw(edited(rows))
        data = delimited(([header] if header else []) + rows, sep, quoted=sep == "," and draw(st.booleans()))
        out[name] = draw(mutated(data)) if mode == "mutated" and draw(st.booleans()) else data
    return out


# ---------------------------------------------------------------- files: as CSV


@st.composite
def files_csv(draw) -> dict[str, bytes]:
    inter = draw(log_rows())
    header = ["user", "item", "timestamp"]
    if draw(st.booleans()):  # ratings: the positives (> 3) are kept
        header.append("rating")
        inter = [r + [draw(st.sampled_from(["4", "5", "5.0"]))] for r in inter]
    items = [[i, f"title of {i}"] for i in ITEMS]
    return draw(text_files({"interactions.csv": (header, inter), "items.csv": (["item", "text"], items)}))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(files=files_csv())
def test_files_csv_gives_a_dataset_or_names_the_file(files):
    with scratch() as tmp:
        (tmp / "src").mkdir()
        for name, data in files.items():
            (tmp / "src" / name).write_bytes(data)
        valid_or_named(lambda: preprocess(f"files:{tmp / 'src'}", tmp / "out"), "interactions.csv", "items.csv")


# ---------------------------------------------------------------- files: as Parquet


def arrow_column(draw, n: int, pool: list[str]) -> pa.Array:
    """A column of `n` values of a random Arrow type, ids from `pool` where the type allows."""
    kind = draw(st.sampled_from(["string", "large_string", "int", "float", "bool", "binary", "list", "timestamp",
                                 "dictionary", "null", "date", "decimal", "struct", "duration"]))
    ints = draw(st.lists(st.integers(-3, 2**40), min_size=n, max_size=n))
    ids = draw(st.lists(st.sampled_from(pool) | awkward_text, min_size=n, max_size=n))
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if kind in ("string", "large_string"):
        return pa.array([None if z and draw(st.booleans()) else v for v, z in zip(ids, nulls)],
                        pa.string() if kind == "string" else pa.large_string())
    if kind == "int":
        return pa.array(ints, pa.int64())
    if kind == "float":
        return pa.array(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n)),
                        pa.float64())
    if kind == "bool":
        return pa.array(nulls, pa.bool_())
    if kind == "binary":
        return pa.array(draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n)), pa.binary())
    if kind == "list":
        return pa.array([[i] for i in ints], pa.list_(pa.int64()))
    if kind == "timestamp":
        return pa.array([abs(i) for i in ints], pa.timestamp("s"))
    if kind == "dictionary":
        return pa.array(ids).dictionary_encode()
    if kind == "null":
        return pa.nulls(n)
    if kind == "date":
        return pa.array([abs(i) % 100_000 for i in ints], pa.date32())
    if kind == "decimal":
        return pa.array([decimal.Decimal(i % 1000) for i in ints], pa.decimal128(10, 2))
    if kind == "struct":
        return pa.array([{"a": i} for i in ints])
    return pa.array(ints, pa.duration("s"))


@st.composite
def parquet_file(draw, columns: dict[str, pa.Array], mode: str) -> bytes:
    """A Parquet file of the valid `columns`; in `edited` mode one of them (or an extra one) of a random type."""
    if mode == "random":
        names = draw(st.lists(st.sampled_from([*columns, *columns, "extra"]), min_size=1, max_size=len(columns) + 1,
                              unique=True))
        n = draw(st.integers(0, 25))
        columns = {name: arrow_column(draw, n, USERS + ITEMS) for name in names}
    elif mode == "edited":
        n = len(next(iter(columns.values())))
        columns = {**columns, draw(st.sampled_from([*columns, "extra"])): arrow_column(draw, n, USERS + ITEMS)}
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    data = buf.getvalue()
    return draw(mutated(data)) if mode == "mutated" and draw(st.booleans()) else data


@st.composite
def files_parquet(draw) -> dict[str, bytes]:
    mode = draw(MODES)
    inter = draw(log_rows())
    id_type = draw(st.sampled_from([pa.string(), pa.large_string()]))
    interactions = {"user": pa.array([r[0] for r in inter], id_type), "item": pa.array([r[1] for r in inter], id_type),
                    "timestamp": pa.array([int(r[2]) for r in inter], pa.int64())}
    items = {"item": pa.array(ITEMS, id_type), "text": pa.array([f"title of {i}" for i in ITEMS])}
    return {"interactions.parquet": draw(parquet_file(interactions, mode)),
            "items.parquet": draw(parquet_file(items, mode))}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(files=files_parquet())
def test_files_parquet_gives_a_dataset_or_names_the_file(files):
    with scratch() as tmp:
        (tmp / "src").mkdir()
        for name, data in files.items():
            (tmp / "src" / name).write_bytes(data)
        valid_or_named(lambda: preprocess(f"files:{tmp / 'src'}", tmp / "out"), "interactions.parquet",
                       "items.parquet")


# ---------------------------------------------------------------- MIND


@st.composite
def mind_files(draw) -> dict[str, bytes]:
    """behaviors.tsv (impression, user, time, history, impressions) and news.tsv (8 fields, the title 4th)."""
    news = [f"N{k}" for k in range(5)]
    behaviors = []
    for k, user in enumerate(USERS):
        history = draw(st.lists(st.sampled_from(news), max_size=3))
        clicks = draw(st.lists(st.sampled_from(news).map(lambda n: f"{n}-1"), min_size=3 - len(history), max_size=4))
        shown = clicks + draw(st.lists(st.sampled_from(news).map(lambda n: f"{n}-0"), max_size=2))
        behaviors.append([str(k + 1), user, f"11/{k + 11}/2019 8:{k:02d}:22 AM", " ".join(history), " ".join(shown)])
    titles = [[n, "news", "sub", f"title of {n}", "abstract", "https://x", "[]", "[]"] for n in news]
    return draw(text_files({"behaviors.tsv": (None, behaviors), "news.tsv": (None, titles)}, sep="\t"))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(files=mind_files())
def test_mind_gives_a_dataset_or_names_the_file(files):
    with scratch() as tmp, pytest.MonkeyPatch.context() as mp:
        folder = tmp / "home" / "mind" / "small"
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        mp.setenv("PAD_DATA_HOME", str(tmp / "home"))
        valid_or_named(lambda: preprocess("mind:small", tmp / "out"), "behaviors.tsv", "news.tsv")


# ---------------------------------------------------------------- Amazon 2018

json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | awkward_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(awkward_text, inner, max_size=3),
                          max_leaves=8)
meta_line = st.one_of(
    st.fixed_dictionaries({"asin": st.sampled_from(ITEMS) | json_value},
                          optional={"title": awkward_text | json_value, "other": json_value}).flatmap(
        lambda rec: st.sampled_from([json.dumps(rec), repr(rec)])),
    json_value.map(json.dumps), awkward_text, st.integers(1, 3000).map(lambda k: "[" * k), st.just(""),
)


@st.composite
def amazon_files(draw) -> dict[str, bytes]:
    """Ratings CSV (item, user, rating, timestamp; no header) and gzipped metadata lines (JSON or Python literals)."""
    ratings = [[item, user, draw(st.sampled_from(["4", "5", "4.0", "2"])), t] for user, item, t in draw(log_rows())]
    lines = [draw(st.sampled_from([json.dumps, repr]))({"asin": i, "title": f"title of {i}"}) for i in ITEMS]
    mode = draw(MODES)
    files = draw(text_files({"Fuzz.csv": (None, ratings)}, mode=mode))
    if mode in ("edited", "random"):
        for _ in range(draw(st.integers(1, 3))):
            lines[draw(st.integers(0, len(lines) - 1))] = draw(meta_line)
    meta = gzip.compress("\n".join(lines).encode("utf-8", "surrogatepass"))
    files["meta_Fuzz.json.gz"] = draw(mutated(meta)) if mode == "mutated" and draw(st.booleans()) else meta
    return files


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(files=amazon_files())
def test_amazon2018_gives_a_dataset_or_names_the_file(files):
    with scratch() as tmp, pytest.MonkeyPatch.context() as mp:
        folder = tmp / "home" / "amazon2018"
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        mp.setenv("PAD_DATA_HOME", str(tmp / "home"))
        valid_or_named(lambda: preprocess("amazon2018:Fuzz", tmp / "out"), "Fuzz.csv", "meta_Fuzz.json.gz")


# ---------------------------------------------------------------- the artifacts' readers


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A dataset, a text and a phase-1 model artifact, made by the real steps on a small synthetic source."""
    from conftest import _synthetic_raw, save_tiny_bert
    from padcore import steps

    root = tmp_path_factory.mktemp("fuzz-artifacts")
    raw = _synthetic_raw(n_users=60, n_items=20, seed=4)
    (root / "src").mkdir()
    raw.interactions.to_csv(root / "src" / "interactions.csv", index=False)
    raw.items.to_csv(root / "src" / "items.csv", index=False)
    save_tiny_bert(root / "bert", raw.items["text"].tolist())
    steps.preprocess(f"files:{root / 'src'}", root / "dataset", buckets=3)
    steps.embed(root / "dataset", root / "text", encoder=f"hf:{root / 'bert'}", device="cpu", cache=False)
    steps.pretrain(root / "dataset", root / "model", dim=8, layers=1, epochs=1, device="cpu")
    return root


def read_dataset(path: Path):
    from padcore.dataset import Protocol, load_dataset

    ds = load_dataset(path)
    Protocol.from_options(**ds.meta["protocol"])  # what the training steps take from it
    assert isinstance(ds.item_hash, str) and isinstance(ds.dataset_id, str)
    return ds


def read_text(path: Path, dataset: Path):
    from padcore.text import load_text

    table = load_text(path, dataset)
    assert table.dtype in (np.float16, np.float32) and table.ndim == 2 and np.isfinite(table).all()  # as stored
    return table


def read_model(path: Path, dataset: Path):
    from padcore.checkpoint import item_tables, read_model_meta
    from padcore.dataset import load_dataset

    read_model_meta(path, load_dataset(dataset), "pretrain")
    return item_tables(path)


READERS = {"dataset": (read_dataset, ["meta.json", "items.parquet", "sequences.parquet"]),
           "text": (read_text, ["meta.json", "embeddings.npy"]),
           "model": (read_model, ["meta.json", "config.json", "model.safetensors"])}


@st.composite
def meta_mutation(draw, meta: dict):
    """meta.json as random JSON, or with one field dropped, added, or set to a random value."""
    how = draw(st.sampled_from(["replace", "drop", "set", "add"]))
    if how == "replace":
        return json.dumps(draw(json_value))
    key = draw(st.sampled_from(sorted(meta)))
    out = dict(meta)
    if how == "drop":
        out.pop(key)
    elif how == "set":
        out[key] = draw(json_value)
    else:
        out[draw(awkward_text)] = draw(json_value)
    return json.dumps(out)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.large_base_example])
@given(data=st.data(), kind=st.sampled_from(sorted(READERS)))
def test_artifact_readers_give_a_valid_artifact_or_name_the_file(artifacts, data, kind):
    read, files = READERS[kind]
    with scratch() as tmp:
        folder = shutil.copytree(artifacts / kind, tmp / kind)
        name = data.draw(st.sampled_from(files), label="file")
        path = folder / name
        if name == "meta.json" and data.draw(st.booleans(), label="as JSON"):
            path.write_text(data.draw(meta_mutation(json.loads(path.read_text())), label="meta"))
        else:
            path.write_bytes(data.draw(mutated(path.read_bytes()), label="bytes"))
        assume(path.read_bytes() != (artifacts / kind / name).read_bytes())
        args = () if kind == "dataset" else (artifacts / "dataset",)
        valid_or_named(lambda: read(folder, *args), str(folder))


# ---------------------------------------------------------------- what longer runs found, kept as fixed examples


@pytest.mark.parametrize("where", ["value", "column name"])
def test_text_that_is_not_utf8_in_parquet_names_the_file(tmp_path, where):
    """Parquet does not check that its text is UTF-8; pandas or pyarrow then failed with a UnicodeDecodeError."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"item": ["i0", "i1"], "text": ["title 0", "title 1"]}), buf)
    data = bytearray(buf.getvalue())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")  # the schema, with the column names, comes first
    at = data.find(b"title 1") if where == "value" else data.find(b"text", footer)
    data[at + 1] = 0xF1
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "items.parquet").write_bytes(bytes(data))
    pq.write_table(pa.table({"user": ["u0"] * 3, "item": ["i0", "i1", "i0"], "timestamp": [1, 2, 3]}),
                   tmp_path / "src" / "interactions.parquet")
    with pytest.raises(PadError, match=r"items.parquet: not a readable Parquet file"):
        preprocess(f"files:{tmp_path / 'src'}", tmp_path / "out")
