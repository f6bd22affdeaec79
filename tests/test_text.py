"""The text artifact: embedding, sharding and merging, reuse, bad input, loading."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from padcore import encoders
from pad.cli import main
from padcore.dataset import Dataset, Protocol, RawData, build_dataset, write_dataset
from padcore.encoders import Encoder, EncoderSpec
from padcore.errors import PadError
from padcore.steps import embed, embed_merge
from padcore.text import EMBEDDINGS, Shard, load_text, text_hash

DIM = 8
WORDS = "oat salt tea rice jam soap bean corn milk honey".split()


def fake_vector(text: str) -> np.ndarray:
    """A vector that depends on the text alone (any batch, any order)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class FakeEncoder(Encoder):
    dim = DIM

    def __init__(self, batches: list):
        self.batches = batches

    def encode(self, texts):
        self.batches.append(list(texts))
        return np.stack([fake_vector(t) for t in texts])


@dataclass(frozen=True)
class FakeSpec(EncoderSpec):
    name: str
    loads: list
    batches: list

    def settings(self) -> dict:
        return {"encoder": self.name, "model": "fake-1"}

    def load(self, device: str) -> Encoder:
        self.loads.append(device)
        return FakeEncoder(self.batches)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Encoder `fake` registered; the cache under tmp_path. Yields the spec (its `loads`, `batches`)."""
    spec = FakeSpec("fake", [], [])
    monkeypatch.setitem(encoders.SPECS, "fake", lambda options: spec)
    monkeypatch.setenv("PAD_DATA_HOME", str(tmp_path / "home"))
    return spec


def make_dataset(folder: Path, n_items: int = 23, seed: int = 0) -> Dataset:
    """Items with texts of 1..6 random words; user k sees items k..k+5 (mod n), so every item is kept."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 7))) + f" {k}" for k in range(n_items)]
    users, items = [], []
    for k in range(n_items):
        users += [f"u{k}"] * 6
        items += [f"i{(k + j) % n_items}" for j in range(6)]
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": np.arange(len(users))})
    table = pd.DataFrame({"item": [f"i{k}" for k in range(n_items)], "text": texts})
    ds = build_dataset(RawData(inter, table, "inter.csv", "items.csv", "test"), Protocol(min_len=5))
    write_dataset(ds, folder)
    return ds


def blank_texts(ds: Dataset, rows: list[int]) -> None:
    """Blank some texts of a written dataset (as a foreign items.parquet might have them)."""
    items = ds.items.copy()
    items.loc[rows, "text"] = [None if i % 2 else "  " for i in range(len(rows))]
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), ds.path / "items.parquet")


def reference_table(ds: Dataset, dtype: str = "float16") -> np.ndarray:
    rows = [np.zeros(DIM, np.float32)] + [fake_vector(t) for t in ds.items["text"]]
    return np.stack(rows).astype(dtype)


def stored(out: Path) -> np.ndarray:
    return np.load(out / EMBEDDINGS)


# --- sharding arithmetic -------------------------------------------------------


@pytest.mark.parametrize("n,count", [(23, 1), (23, 4), (10, 10), (7, 3), (100, 7)])
def test_shards_cover_every_item_once_in_near_equal_slices(n, count):
    ranges = [Shard(i, count).rows(n) for i in range(count)]
    covered = np.concatenate([np.arange(a, b) for a, b in ranges])
    np.testing.assert_array_equal(covered, np.arange(1, n + 1))
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("spec", ["3", "a/b", "4/4", "-1/3", "1/0", "1/2/3"])
def test_bad_shard_specs_are_errors(spec):
    with pytest.raises(PadError, match="shard"):
        Shard.parse(spec)


def test_text_hash_changes_with_items_settings_and_dtype():
    base = text_hash("items", {"encoder": "x"}, "float16", None)
    assert base == text_hash("items", {"encoder": "x"}, "float16", None)
    assert len({base, text_hash("other", {"encoder": "x"}, "float16", None),
                text_hash("items", {"encoder": "y"}, "float16", None),
                text_hash("items", {"encoder": "x"}, "float32", None),
                text_hash("items", {"encoder": "x"}, "float16", "(none)")}) == 5


# --- the one-shot table --------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_table_rows_follow_item_idx_whatever_the_batching(tmp_path, fake, dtype):
    ds = make_dataset(tmp_path / "ds")
    meta = embed(ds.path, tmp_path / "text", encoder="fake", batch_size=5, dtype=dtype, device="cpu")
    table = stored(tmp_path / "text")
    assert table.dtype == np.dtype(dtype) and table.shape == (ds.n_items + 1, DIM)
    np.testing.assert_array_equal(table, reference_table(ds, dtype))
    assert meta["kind"] == "text" and meta["rows"] == ds.n_items + 1 and meta["dim"] == DIM
    assert meta["item_hash"] == ds.item_hash and meta["dataset_id"] == ds.dataset_id
    assert meta["encoder"] == "fake" and meta["model"] == "fake-1" and meta["dtype"] == dtype
    assert json.loads((tmp_path / "text" / "meta.json").read_text()) == meta
    # batches of similar length, longest first
    lengths = [max(len(t) for t in b) for b in fake.batches]
    assert lengths == sorted(lengths, reverse=True) and all(len(b) <= 5 for b in fake.batches)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_load_text_gives_float32_checked_against_the_dataset(tmp_path, fake, dtype):
    ds = make_dataset(tmp_path / "ds")
    embed(ds.path, tmp_path / "text", encoder="fake", dtype=dtype)
    for dataset in (ds, ds.path):
        table = load_text(tmp_path / "text", dataset)
        assert table.dtype == np.float32 and table.shape == (ds.n_items + 1, DIM)
        assert table.flags.writeable and not isinstance(table, np.memmap)
        np.testing.assert_array_equal(table, reference_table(ds, dtype).astype(np.float32))
    other = make_dataset(tmp_path / "other", seed=1)
    with pytest.raises(PadError, match="other items"):
        load_text(tmp_path / "text", other)


def test_load_text_refuses_a_damaged_table(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds")
    embed(ds.path, tmp_path / "text", encoder="fake", dtype="float32")
    np.save(tmp_path / "text" / EMBEDDINGS, reference_table(ds, "float32")[:-1])
    with pytest.raises(PadError, match="holds"):
        load_text(tmp_path / "text", ds)
    bad = reference_table(ds, "float32")
    bad[0] = 1
    np.save(tmp_path / "text" / EMBEDDINGS, bad)
    with pytest.raises(PadError, match="row 0"):
        load_text(tmp_path / "text", ds)


# --- shards and merge ------------------------------------------------------------


def test_sharded_then_merged_equals_one_shot(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds", n_items=23)
    embed(ds.path, tmp_path / "whole", encoder="fake", batch_size=4, cache=False)
    parts = [tmp_path / f"part{i}" for i in range(4)]
    for i in (2, 0, 3, 1):
        meta = embed(ds.path, parts[i], encoder="fake", batch_size=3, shard=f"{i}/4")
        start, stop = Shard(i, 4).rows(ds.n_items)
        assert meta["kind"] == "text-shard" and stored(parts[i]).shape == (stop - start, DIM)
    merged = embed_merge([parts[3], parts[1], parts[0], parts[2]], tmp_path / "merged", cache=False)
    np.testing.assert_array_equal(stored(tmp_path / "merged"), stored(tmp_path / "whole"))
    assert merged["kind"] == "text" and merged["shards"] == 4 and merged["rows"] == ds.n_items + 1
    assert merged["text_hash"] == json.loads((tmp_path / "whole" / "meta.json").read_text())["text_hash"]
    load_text(tmp_path / "merged", ds)


def test_merge_refuses_missing_doubled_and_foreign_shards(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds")
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, p in enumerate(parts):
        embed(ds.path, p, encoder="fake", shard=f"{i}/3")
    with pytest.raises(PadError, match=r"shard\(s\) \['1/3'\] missing"):
        embed_merge([parts[0], parts[2]], tmp_path / "m")
    with pytest.raises(PadError, match=r"\['2/3'\] given more than once"):
        embed_merge(parts + [parts[2]], tmp_path / "m")
    embed(ds.path, tmp_path / "f32", encoder="fake", shard="1/3", dtype="float32")
    with pytest.raises(PadError, match="another table"):
        embed_merge([parts[0], tmp_path / "f32", parts[2]], tmp_path / "m")
    embed(ds.path, tmp_path / "whole", encoder="fake")
    with pytest.raises(PadError, match="embed-merge"):
        load_text(parts[0], ds)
    with pytest.raises(PadError, match="already whole"):
        embed_merge([tmp_path / "whole"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_rerun_of_a_finished_shard_is_skipped(tmp_path, fake, capsys):
    ds = make_dataset(tmp_path / "ds")
    embed(ds.path, tmp_path / "p", encoder="fake", shard="1/2")
    mtime = (tmp_path / "p" / EMBEDDINGS).stat().st_mtime_ns
    assert len(fake.loads) == 1
    capsys.readouterr()
    embed(ds.path, tmp_path / "p", encoder="fake", shard="1/2")
    assert "skipped" in capsys.readouterr().out
    assert len(fake.loads) == 1 and (tmp_path / "p" / EMBEDDINGS).stat().st_mtime_ns == mtime
    # another shard, or other settings, into the same folder is work to do
    embed(ds.path, tmp_path / "p", encoder="fake", shard="0/2")
    embed(ds.path, tmp_path / "p", encoder="fake", shard="0/2", dtype="float32")
    assert len(fake.loads) == 3 and stored(tmp_path / "p").dtype == np.float32


# --- reuse ------------------------------------------------------------------------


def test_a_matching_table_in_the_cache_is_reused(tmp_path, fake, capsys):
    ds = make_dataset(tmp_path / "ds")
    embed(ds.path, tmp_path / "a", encoder="fake")
    capsys.readouterr()
    meta = embed(ds.path, tmp_path / "b", encoder="fake")
    assert "reused" in capsys.readouterr().out and len(fake.loads) == 1
    assert meta["reused_from"].startswith(str(tmp_path / "home" / "text-cache"))
    np.testing.assert_array_equal(stored(tmp_path / "b"), stored(tmp_path / "a"))
    load_text(tmp_path / "b", ds)
    embed(ds.path, tmp_path / "c", encoder="fake", dtype="float32")  # other settings: computed
    embed(ds.path, tmp_path / "d", encoder="fake", cache=False)  # cache off: computed
    assert len(fake.loads) == 3
    # the same texts in another dataset artifact hash the same: reused
    same = make_dataset(tmp_path / "ds2")
    embed(same.path, tmp_path / "e", encoder="fake")
    assert len(fake.loads) == 3


def test_merged_tables_enter_the_cache(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds")
    parts = [tmp_path / f"p{i}" for i in range(2)]
    for i, p in enumerate(parts):
        embed(ds.path, p, encoder="fake", shard=f"{i}/2")
    embed_merge(parts, tmp_path / "m")
    embed(ds.path, tmp_path / "again", encoder="fake")
    assert len(fake.loads) == 2
    np.testing.assert_array_equal(stored(tmp_path / "again"), stored(tmp_path / "m"))


# --- bad input --------------------------------------------------------------------


def test_empty_texts_get_the_placeholder_and_are_counted(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds")
    blank_texts(ds, [3, 10])
    meta = embed(ds.path, tmp_path / "t", encoder="fake", placeholder="unknown product")
    table = stored(tmp_path / "t")
    for idx in (4, 11):
        np.testing.assert_array_equal(table[idx], fake_vector("unknown product").astype(np.float16))
    np.testing.assert_array_equal(table[5], fake_vector(ds.items["text"][4]).astype(np.float16))
    assert meta["empty_texts"] == 2 and meta["empty_items"] == [4, 11] and meta["placeholder"] == "unknown product"
    parts = [tmp_path / f"p{i}" for i in range(2)]
    for i, p in enumerate(parts):
        embed(ds.path, p, encoder="fake", shard=f"{i}/2", placeholder="unknown product")
    merged = embed_merge(parts, tmp_path / "m", cache=False)
    assert merged["empty_texts"] == 2 and merged["empty_items"] == [4, 11]


def test_empty_texts_fail_when_asked(tmp_path, fake):
    ds = make_dataset(tmp_path / "ds")
    blank_texts(ds, [6])
    with pytest.raises(PadError, match=r"items.parquet row 6: item 'i6' \(item_idx 7\) has no text"):
        embed(ds.path, tmp_path / "t", encoder="fake", on_empty="fail")
    assert not (tmp_path / "t").exists() and not fake.loads


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"encoder": "nope"}, "unknown encoder 'nope'"),
        ({"encoder": "hf:/no/such/model"}, "does not exist"),
        ({"encoder": "fake", "dtype": "int8"}, "embed option 'dtype' is 'int8'; allowed: float16, float32"),
        ({"encoder": "fake", "on_empty": "skip"}, "embed option 'on_empty' is 'skip'; allowed: placeholder, fail"),
        ({"encoder": "fake", "batch_size": 0}, "embed option 'batch_size' is 0; allowed: 1 <= value"),
        ({"encoder": "fake", "shard": "2/2"}, "embed option 'shard' is '2/2'; allowed: I/N with 0 <= I < N"),
        ({"encoder": "fake", "shard": "1-2"}, "embed option 'shard' is '1-2'"),
        ({"encoder": "fake", "device": "gpu"}, "embed option 'device' is 'gpu'; allowed: auto, cpu, cuda, cuda:N"),
        ({"encoder": "fake", "placeholder": " "}, "embed option 'placeholder' is empty"),
        ({"encoder": "fake", "max_length": -1}, "encoder option 'max_length' is -1; allowed: 0 <= value"),
        ({"encoder": "fake", "temperature": 1}, "unknown encoder option"),
        ({"encoder": "minilm", "instruction": "Represent"}, "takes no option"),
    ],
)
def test_bad_settings_are_specific_errors(tmp_path, fake, kwargs, message):
    ds = make_dataset(tmp_path / "ds")
    with pytest.raises(PadError, match=message):
        embed(ds.path, tmp_path / "t", **kwargs)
    assert not fake.loads and not (tmp_path / "t").exists()


def test_a_dataset_that_does_not_validate_is_an_error(tmp_path, fake):
    with pytest.raises(PadError, match="meta.json: missing"):
        embed(tmp_path / "nothing", tmp_path / "t", encoder="fake")
    ds = make_dataset(tmp_path / "ds")
    (ds.path / "sequences.parquet").unlink()
    with pytest.raises(PadError, match="sequences.parquet: missing"):
        embed(ds.path, tmp_path / "t", encoder="fake")


def test_a_non_finite_vector_is_an_error(tmp_path, monkeypatch):
    class Huge(FakeEncoder):
        def encode(self, texts):
            return np.full((len(texts), DIM), 1e6, np.float32)

    monkeypatch.setattr(FakeSpec, "load", lambda self, device: Huge([]))
    monkeypatch.setitem(encoders.SPECS, "huge", lambda options: FakeSpec("huge", [], []))
    ds = make_dataset(tmp_path / "ds")
    with pytest.raises(PadError, match="non-finite embedding in float16; use dtype float32"):
        embed(ds.path, tmp_path / "t", encoder="huge", cache=False)
    embed(ds.path, tmp_path / "t", encoder="huge", dtype="float32", cache=False)


# --- the CLI ----------------------------------------------------------------------


def test_cli_embed_shards_and_merge(tmp_path, fake, capsys):
    ds = make_dataset(tmp_path / "ds")
    for i in range(2):
        assert main(["embed", "--dataset", str(ds.path), "--encoder", "fake", "--shard", f"{i}/2",
                     "--out", str(tmp_path / f"p{i}"), "--dtype", "float32", "--batch-size", "3"]) == 0
    assert "items/s" in capsys.readouterr().out
    assert main(["embed-merge", str(tmp_path / "p1"), str(tmp_path / "p0"), "--out", str(tmp_path / "m")]) == 0
    np.testing.assert_array_equal(stored(tmp_path / "m"), reference_table(ds, "float32"))
    assert main(["embed", "--dataset", str(ds.path), "--encoder", "bert", "--out", str(tmp_path / "x")]) == 2
    assert "pad embed: error: unknown encoder 'bert'" in capsys.readouterr().err
    assert main(["embed-merge", str(tmp_path / "p1"), "--out", str(tmp_path / "x")]) == 2
    assert "missing" in capsys.readouterr().err


# --- real data --------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.slow
def test_minilm_on_a_prime_pantry_shard(tmp_path, monkeypatch):
    import os

    home = Path(os.environ.get("PAD_DATA_HOME", "")) / "prime_pantry"
    if not (home / "metadata_Prime_Pantry.csv").is_file():
        pytest.skip("Prime Pantry not under PAD_DATA_HOME")
    from padcore.steps import preprocess

    preprocess("prime_pantry", tmp_path / "pp")
    monkeypatch.setenv("PAD_DATA_HOME", str(tmp_path / "home"))
    meta = embed(tmp_path / "pp", tmp_path / "t", encoder="minilm", shard="0/64", device="cpu")
    table = stored(tmp_path / "t")
    assert meta["dim"] == 384 and table.shape == (meta["items"], 384) and meta["items"] >= 8347 // 64
    norms = np.linalg.norm(table.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
