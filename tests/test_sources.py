"""Source adapters on small files written by the tests, downloads, and bad input through the CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import padcore.sources as sources
from pad.cli import main
from padcore.dataset import Protocol, build_dataset, load_dataset
from padcore.download import fetch
from padcore.errors import PadError
from padcore.sources import load_source

UNREACHABLE = "http://127.0.0.1:9"  # a download attempt fails at once instead of leaving the machine

INTERACTIONS = pd.DataFrame(
    {
        "user": ["u1", "u2", "u1", "u1", "u3", "u2", "u1", "u2", "u1", "u2", "u2", "u1"],
        "item": ["a", "b", "c", "b", "a", "d", "e", "a", "a", "c", "e", "d"],
        "timestamp": [5, 1, 2, 3, 1, 2, 4, 3, 6, 4, 5, 1],
        "rating": [5, 4, 5, 4, 5, 5, 2, 5, 4, 4, 5, 5],
    }
)
ITEMS = pd.DataFrame({"item": ["e", "d", "c", "b", "a", "z"], "text": ["E e", "D d", 'C "c"', "B, b", "A a", "Z"]})


def seqs(ds) -> dict[str, list[str]]:
    key = dict(zip(ds.items["item_idx"], ds.items["item"]))
    return {u: [key[i] for i in ds.sequence(k)] for k, u in enumerate(ds.users)}


def write_folder(folder: Path, fmt: str = "csv", inter: pd.DataFrame = INTERACTIONS, items: pd.DataFrame = ITEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in (("interactions", inter), ("items", items)):
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- files:


@pytest.mark.parametrize("fmt, first_row", [("csv", 2), ("parquet", 1)])
def test_files_local(tmp_path, fmt, first_row, capsys):
    folder = write_folder(tmp_path / "shop", fmt)
    raw = load_source(f"files:{folder}")
    assert raw.interactions.index[0] == first_row and raw.items.index[0] == first_row
    assert raw.interactions_file == f"{folder}/interactions.{fmt}"
    assert raw.input_hashes == {p.name: sha256(p) for p in sorted(folder.iterdir())}
    assert "11 of 12 ratings are > 3" in capsys.readouterr().out
    ds = build_dataset(raw, Protocol(min_len=4))
    # u1 by time: d1 c2 b3 (e4 rated 2: dropped) a5 a6; u2: b d a c e; u3 has one interaction.
    assert seqs(ds) == {"u1": ["d", "c", "b", "a", "a"], "u2": ["b", "d", "a", "c", "e"]}
    assert ds.items["item"].tolist() == ["e", "d", "c", "b", "a"]  # items-file order, z unused
    assert ds.items["text"].tolist() == ["E e", "D d", 'C "c"', "B, b", "A a"]
    assert ds.meta["input_hashes"] == raw.input_hashes


def test_files_without_rating_keeps_every_row(tmp_path):
    folder = write_folder(tmp_path / "shop", "csv", INTERACTIONS.drop(columns="rating"))
    ds = build_dataset(load_source(f"files:{folder}"), Protocol(min_len=4))
    assert seqs(ds)["u1"] == ["d", "c", "b", "e", "a", "a"]


def test_files_from_gcs(gcs, tmp_path):
    bucket = gcs.create_bucket("pad-data")
    local = write_folder(tmp_path / "local", "parquet")
    for p in local.iterdir():
        bucket.blob(f"shops/one/{p.name}").upload_from_filename(str(p))
    bucket.blob("shops/one/old/items.csv").upload_from_string("item,text\n")  # deeper objects are not read
    raw = load_source("files:gs://pad-data/shops/one/")
    assert raw.interactions_file == "gs://pad-data/shops/one/interactions.parquet"
    assert raw.input_hashes == {p.name: sha256(p) for p in local.iterdir()}
    assert seqs(build_dataset(raw, Protocol(min_len=4))) == seqs(build_dataset(load_source(f"files:{local}"), Protocol(min_len=4)))


def test_files_from_gcs_errors(gcs):
    gcs.create_bucket("pad-data").blob("other/items.csv").upload_from_string("item,text\na,A\n")
    with pytest.raises(PadError, match=r"gs://pad-data/shop: holds neither of interactions.csv and interactions.parquet"):
        load_source("files:gs://pad-data/shop")
    with pytest.raises(PadError, match=r"gs://no-such-bucket/x: cannot read from Google Cloud Storage"):
        load_source("files:gs://no-such-bucket/x")


def test_files_layout_errors(tmp_path):
    with pytest.raises(PadError, match=r"nowhere: folder not found"):
        load_source(f"files:{tmp_path / 'nowhere'}")
    folder = write_folder(tmp_path / "both", "csv")
    write_folder(folder, "parquet")
    with pytest.raises(PadError, match=r"both: holds both of interactions.csv and interactions.parquet"):
        load_source(f"files:{folder}")
    folder = write_folder(tmp_path / "cols", "csv", INTERACTIONS.rename(columns={"timestamp": "time"}))
    with pytest.raises(PadError, match=r"cols/interactions.csv: missing column\(s\) \['timestamp'\]"):
        load_source(f"files:{folder}")
    folder = write_folder(tmp_path / "junk", "parquet")
    (folder / "items.parquet").write_text("item,text\n")
    with pytest.raises(PadError, match=r"junk/items.parquet: not a readable Parquet file"):
        load_source(f"files:{folder}")
    with pytest.raises(PadError, match=r"source 'files:': expected a folder"):
        load_source("files:")


def test_files_malformed_rows(tmp_path):
    folder = write_folder(tmp_path / "shop", "csv")
    path = folder / "interactions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + ["u1,a,7,5,extra"] + lines[4:]) + "\n")
    with pytest.raises(PadError, match=r"shop/interactions.csv: malformed .*line 5"):
        load_source(f"files:{folder}")
    path.write_text("\n".join(lines[:4] + ["u1,a,7,five"] + lines[4:]) + "\n")
    with pytest.raises(PadError, match=r"shop/interactions.csv row 5: field 'rating' is 'five', expected a number"):
        load_source(f"files:{folder}")


# ---------------------------------------------------------------- amazon2018

# item, user, rating, timestamp (no header), as in categoryFilesSmall/<Category>.csv
RATINGS = """\
A1,U1,5.0,100
B2,U1,4.0,300
C3,U1,5.0,200
D4,U1,5.0,400
X9,U1,5.0,450
A1,U1,2.0,500
E5,U1,4.0,600
A1,U2,5.0,10
B2,U2,5.0,20
C3,U2,3.0,30
T0,U2,5.0,40
"""
META = [
    json.dumps({"asin": "C3", "title": "Cee", "price": "$1"}),
    json.dumps({"asin": "A1", "title": "Ay", "also_buy": ["B2"]}),
    "{'asin': 'B2', 'title': \"Bee's\", 'rank': ['1 in Food']}",  # not strict JSON, as some release lines
    "",
    json.dumps({"asin": "T0", "title": "  "}),
    json.dumps({"asin": "A1", "title": "Ay again"}),
    json.dumps({"asin": "D4", "title": "Dee"}),
    json.dumps({"asin": "F6"}),
    json.dumps({"asin": "E5", "title": "Ee"}),
]


def write_amazon(home: Path, category: str = "Cat", meta: list[str] = META, ratings: str = RATINGS) -> Path:
    folder = home / "amazon2018"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{category}.csv").write_text(ratings)
    with gzip.open(folder / f"meta_{category}.json.gz", "wt") as f:
        f.write("\n".join(meta) + "\n")
    return folder


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data_home"
    home.mkdir()
    monkeypatch.setenv("PAD_DATA_HOME", str(home))
    monkeypatch.setattr(sources, "AMAZON2018_URL", UNREACHABLE)
    monkeypatch.setattr(sources, "MIND_URL", UNREACHABLE + "/MIND{variant}_train.zip")
    monkeypatch.setattr(sources, "PRIME_PANTRY_URL", UNREACHABLE + "/{name}")
    return home


def test_amazon2018_from_the_cache(data_home, capsys):
    folder = write_amazon(data_home)
    raw = load_source("amazon2018:Cat")
    out = capsys.readouterr().out
    assert "9 of 11 ratings are > 3" in out
    assert "dropped 2 item records without a title, 1 repeated item records and 2 interactions with untitled items" in out
    assert raw.items["item"].tolist() == ["C3", "A1", "B2", "D4", "E5"]
    assert raw.items.loc[3, "text"] == "Bee's" and raw.items.loc[2, "text"] == "Ay"  # first record kept
    assert raw.items.index.tolist() == [1, 2, 3, 7, 9]  # line numbers, blank line 4 counted
    assert raw.source == "amazon2018:Cat"
    assert raw.input_hashes == {p.name: sha256(p) for p in folder.iterdir()}
    # U1 positives by time: A1 C3 B2 D4 (X9 has no metadata) E5; U2: A1 B2 (C3 is rated 3, T0 has no title).
    assert raw.interactions.loc[raw.interactions["user"] == "U2", "item"].tolist() == ["A1", "B2"]
    ds = build_dataset(raw, Protocol(min_len=3))
    assert seqs(ds) == {"U1": ["A1", "C3", "B2", "D4", "E5"]}
    assert ds.items["item"].tolist() == ["C3", "A1", "B2", "D4", "E5"]


def test_amazon2018_errors(data_home):
    with pytest.raises(PadError, match=r"expected a category name, e.g. amazon2018:Electronics"):
        load_source("amazon2018:../etc")
    with pytest.raises(PadError, match=r"download of http://127.0.0.1:9/categoryFilesSmall/Nope.csv failed"):
        load_source("amazon2018:Nope")
    write_amazon(data_home, meta=META[:2] + ["{'asin': 'B2', 'title': "] + META[3:])
    with pytest.raises(PadError, match=r"meta_Cat.json.gz row 3: neither JSON nor a Python dict literal"):
        load_source("amazon2018:Cat")
    write_amazon(data_home, meta=META[:2] + [json.dumps({"title": "no id"})])
    with pytest.raises(PadError, match=r"meta_Cat.json.gz row 3: missing field 'asin'"):
        load_source("amazon2018:Cat")
    write_amazon(data_home, ratings=RATINGS.replace("D4,U1,5.0,400", "D4,U1,,400"))
    with pytest.raises(PadError, match=r"Cat.csv row 4: field 'rating' is nan, expected a number"):
        load_source("amazon2018:Cat")


def test_amazon2018_downloads_once(data_home, file_server, monkeypatch):
    served = write_amazon(file_server.root / "src")
    (file_server.root / "categoryFilesSmall").mkdir()
    (file_server.root / "metaFiles2").mkdir()
    os.replace(served / "Cat.csv", file_server.root / "categoryFilesSmall" / "Cat.csv")
    os.replace(served / "meta_Cat.json.gz", file_server.root / "metaFiles2" / "meta_Cat.json.gz")
    monkeypatch.setattr(sources, "AMAZON2018_URL", file_server.url)
    first = load_source("amazon2018:Cat")
    assert file_server.requests == ["/categoryFilesSmall/Cat.csv", "/metaFiles2/meta_Cat.json.gz"]
    assert sorted(p.name for p in (data_home / "amazon2018").iterdir()) == ["Cat.csv", "meta_Cat.json.gz"]
    second = load_source("amazon2018:Cat")
    assert len(file_server.requests) == 2  # reused from the cache
    assert second.input_hashes == first.input_hashes


# ---------------------------------------------------------------- mind

BEHAVIORS = [
    ["1", "U1", "11/15/2019 10:00:00 AM", "N1 N2", "N3-1 N4-0"],
    ["2", "U2", "11/15/2019 9:00:00 AM", "N2", "N1-1 N5-1"],
    ["3", "U1", "11/15/2019 8:00:00 AM", "N1 N2", "N5-1 N3-0"],
    ["4", "U1", "11/15/2019 1:00:00 PM", "N1 N2", "N4-1"],
    ["5", "U3", "11/15/2019 1:00:00 PM", "", "N1-1 N2-0"],
]
NEWS = [
    ["N1", "news", "world", "One", "abstract", "http://x/1", "[]", "[]"],
    ["N2", "sports", "golf", 'Two "quoted"', "", "http://x/2", "[]", "[]"],
    ["N7", "news", "world", "", "", "http://x/7", "[]", "[]"],
    ["N3", "news", "world", "Three", "", "http://x/3", "[]", "[]"],
    ["N4", "news", "world", "Four", "", "http://x/4", "[]", "[]"],
    ["N5", "news", "world", "Five", "", "http://x/5", "[]", "[]"],
    ["N6", "news", "world", "Six", "", "http://x/6", "[]", "[]"],
]


def tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(r) + "\n" for r in rows)


def write_mind(folder: Path, behaviors=BEHAVIORS, news=NEWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "behaviors.tsv").write_text(tsv(behaviors))
    (folder / "news.tsv").write_text(tsv(news))
    return folder


def test_mind_click_sequences(data_home, capsys):
    folder = write_mind(data_home / "mind" / "small")
    raw = load_source("mind:small")
    assert "dropped 1 item records without a title, 0 repeated item records and 0 interactions" in capsys.readouterr().out
    assert raw.source == "mind:small" and raw.interactions_file == str(folder / "behaviors.tsv")
    assert raw.input_hashes == {p.name: sha256(p) for p in folder.iterdir()}
    ds = build_dataset(raw, Protocol(min_len=3))
    # U1: history N1 N2 (from its earliest row), then clicks by time: N5 (8 AM), N3 (10 AM), N4 (1 PM).
    assert seqs(ds) == {"U1": ["N1", "N2", "N5", "N3", "N4"], "U2": ["N2", "N1", "N5"]}
    assert ds.items["text"].tolist() == ["One", 'Two "quoted"', "Three", "Four", "Five"]
    # Rows point at behaviors.tsv lines: U3's click came from line 5.
    u3 = raw.interactions[raw.interactions["user"] == "U3"]
    assert u3.index.tolist() == [5] and u3["item"].tolist() == ["N1"]


def test_mind_is_large_by_default(data_home):
    write_mind(data_home / "mind" / "large")
    assert load_source("mind").source == "mind:large"
    with pytest.raises(PadError, match=r"source 'mind:medium': expected mind, mind:large or mind:small"):
        load_source("mind:medium")


@pytest.mark.parametrize(
    "row, message",
    [
        (["3", "U1", "11/15/2019 25:00:00 AM", "N1", "N5-1"], r"behaviors.tsv row 3: field 'time' is '11/15/2019 25:00:00 AM'"),
        (["3", "U1", "11/15/2019 8:00:00 AM", "N1", "N5-1 N3"], r"behaviors.tsv row 3: field 'impressions' token 'N3'"),
        (["3", "U1", "11/15/2019 8:00:00 AM", "N1"], r"behaviors.tsv row 3: empty field 'impressions'"),
        (["3", "U1", "11/15/2019 8:00:00 AM", "N1", "N5-1", "x"], r"behaviors.tsv: malformed .*line 3"),
    ],
)
def test_mind_malformed_rows(data_home, row, message):
    write_mind(data_home / "mind" / "small", BEHAVIORS[:2] + [row] + BEHAVIORS[3:])
    with pytest.raises(PadError, match=message):
        load_source("mind:small")


def test_mind_downloads_and_extracts_the_zip(data_home, file_server, monkeypatch):
    src = write_mind(file_server.root / "src")
    with zipfile.ZipFile(file_server.root / "MINDsmall_train.zip", "w") as zf:
        for name in ("behaviors.tsv", "news.tsv"):
            zf.write(src / name, name)
        zf.writestr("entity_embedding.vec", "")
    monkeypatch.setattr(sources, "MIND_URL", file_server.url + "/MIND{variant}_train.zip")
    raw = load_source("mind:small")
    assert file_server.requests == ["/MINDsmall_train.zip"]
    folder = data_home / "mind" / "small"
    assert sorted(p.name for p in folder.iterdir()) == ["MINDsmall_train.zip", "behaviors.tsv", "news.tsv"]
    assert raw.input_hashes == {n: sha256(src / n) for n in ("behaviors.tsv", "news.tsv")}
    load_source("mind:small")
    assert len(file_server.requests) == 1


# ---------------------------------------------------------------- prime_pantry (synthetic release files)


def write_prime_pantry(home: Path, monkeypatch, history: list[str]) -> Path:
    folder = home / "prime_pantry"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Prime_Pantry_cleaned_history.csv").write_text(",user,history\n" + "".join(history))
    (folder / "metadata_Prime_Pantry.csv").write_text('asin,title\nB1,"Bee, one"\nA1,Ay\nC1,Cee\n')
    (folder / "Prime_Pantry_fre.csv").write_text("id,fre\n0,0\n")
    monkeypatch.setattr(sources, "PRIME_PANTRY_FILES", {p.name: sha256(p) for p in folder.iterdir()})
    return folder


def test_prime_pantry_format(data_home, monkeypatch):
    write_prime_pantry(data_home, monkeypatch, ["0,u1,\"['A1', 'B1', 'C1', 'A1']\"\n", "1,u2,\"['C1', 'B1', 'A1']\"\n"])
    ds = build_dataset(load_source("prime_pantry"), Protocol(min_len=3))
    assert seqs(ds) == {"u1": ["A1", "B1", "C1", "A1"], "u2": ["C1", "B1", "A1"]}
    assert ds.items["item"].tolist() == ["B1", "A1", "C1"] and ds.items["text"][0] == "Bee, one"


@pytest.mark.parametrize(
    "history, message",
    [
        (["0,u1,\"['A1', 'B1', 'C1']\"\n", "1,u2,\"['C1', 'B1'\"\n"], r"history.csv row 3: field 'history' is not a list"),
        (["0,u1,\"['A1', 'B1', 'C1']\"\n", "1,u2,\"'C1'\"\n"], r"history.csv row 3: field 'history' is not a list"),
        (["0,u1,\"['A1', 'B1', 'C1']\"\n", "1,u1,\"['C1']\"\n"], r"history.csv row 3: duplicate user 'u1'"),
    ],
)
def test_prime_pantry_malformed(data_home, monkeypatch, history, message):
    write_prime_pantry(data_home, monkeypatch, history)
    with pytest.raises(PadError, match=message):
        load_source("prime_pantry")


# ---------------------------------------------------------------- downloads


def test_fetch_verifies_and_reuses(file_server, tmp_path):
    (file_server.root / "f.bin").write_bytes(b"right bytes")
    good = hashlib.sha256(b"right bytes").hexdigest()
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(PadError, match=r"/f.bin: SHA-256 [0-9a-f]{64} does not match the pinned 0{64}; nothing was saved"):
        fetch(f"{file_server.url}/f.bin", dest, "0" * 64)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    assert fetch(f"{file_server.url}/f.bin", dest, good).read_bytes() == b"right bytes"
    fetch(f"{file_server.url}/f.bin", dest, good)
    assert len(file_server.requests) == 2  # the verified copy is reused
    dest.write_bytes(b"corrupted")
    assert fetch(f"{file_server.url}/f.bin", dest, good).read_bytes() == b"right bytes"
    with pytest.raises(PadError, match=r"download of .*/missing.bin failed: HTTP Error 404"):
        fetch(f"{file_server.url}/missing.bin", tmp_path / "cache" / "missing.bin")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


# ---------------------------------------------------------------- the CLI on bad input


def cli(capsys, source: str, out: Path) -> tuple[int, str]:
    code = main(["preprocess", "--source", source, "--out", str(out), "--min-len", "4"])
    return code, capsys.readouterr().err


@pytest.fixture
def previous(tmp_path, capsys) -> Path:
    """A good artifact at --out, which a failed run must leave as it is."""
    out = tmp_path / "out"
    assert cli(capsys, f"files:{write_folder(tmp_path / 'good')}", out)[0] == 0
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def bad_csv(folder: Path, name: str, edit) -> None:
    path = folder / name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


BAD_INPUTS = {
    "missing file": (lambda f: (f / "items.csv").unlink(), r"holds neither of items.csv and items.parquet"),
    "malformed row": (
        lambda f: bad_csv(f, "interactions.csv", lambda ls: ls[:3] + ["u1,a,1,5,6"] + ls[3:]),
        r"interactions.csv: malformed .*line 4",
    ),
    "unknown item": (
        lambda f: bad_csv(f, "interactions.csv", lambda ls: ls + ["u2,q,9,5"]),
        r"interactions.csv row 14: item 'q' is not in .*items.csv",
    ),
    "item with no text": (
        lambda f: bad_csv(f, "items.csv", lambda ls: ls[:2] + ["d,"] + ls[3:]),
        r"items.csv row 3: item 'd' has no text \(field 'text'\)",
    ),
    "duplicate id": (
        lambda f: bad_csv(f, "items.csv", lambda ls: ls + ["c,again"]),
        r"items.csv row 8: duplicate item id 'c'",
    ),
    "empty after filtering": (
        lambda f: bad_csv(f, "interactions.csv", lambda ls: ls[:4]),
        r"interactions.csv: no user has 4 or more interactions; nothing left after filtering",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_cli_bad_input(case, tmp_path, capsys, previous):
    edit, message = BAD_INPUTS[case]
    folder = write_folder(tmp_path / "bad")
    edit(folder)
    before = snapshot(previous)
    code, err = cli(capsys, f"files:{folder}", previous)
    assert code == 2
    assert err.count("pad preprocess: error:") == 1
    assert re.search(message, err), err
    assert snapshot(previous) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "out"]  # no temp folder left
    code, err = cli(capsys, f"files:{folder}", tmp_path / "fresh")
    assert code == 2 and not (tmp_path / "fresh").exists()


def test_cli_hash_mismatch_on_download(data_home, file_server, monkeypatch, capsys, previous):
    for name in sources.PRIME_PANTRY_FILES:
        (file_server.root / name).write_text("not the release\n")
    monkeypatch.setattr(sources, "PRIME_PANTRY_URL", file_server.url + "/{name}")
    before = snapshot(previous)
    code, err = cli(capsys, "prime_pantry", previous)
    assert code == 2
    assert "Prime_Pantry_cleaned_history.csv: SHA-256" in err and "does not match the pinned 9087dcb1" in err
    assert snapshot(previous) == before
    assert list((data_home / "prime_pantry").iterdir()) == []


def test_unknown_source():
    with pytest.raises(PadError, match=r"unknown source 'movielens'; expected one of: prime_pantry"):
        load_source("movielens")


# ---------------------------------------------------------------- the real release


@pytest.mark.realdata
def test_prime_pantry_release(tmp_path):
    home = Path(os.environ.get("PAD_DATA_HOME", "")) / "prime_pantry"
    if not (home / "Prime_Pantry_cleaned_history.csv").is_file():
        pytest.skip("PAD_DATA_HOME holds no prime_pantry release")
    code = main(["preprocess", "--source", "prime_pantry", "--out", str(tmp_path / "pp")])
    assert code == 0
    ds = load_dataset(tmp_path / "pp")
    assert (ds.n_users, ds.n_items, len(ds.flat)) == (12_871, 8_347, 115_004)
    fre = pd.read_csv(home / "Prime_Pantry_fre.csv")
    assert fre["id"].tolist() == list(range(ds.n_items + 1))
    assert np.array_equal(fre["fre"].to_numpy()[1:], ds.items["freq"].to_numpy())
    meta = pd.read_csv(home / "metadata_Prime_Pantry.csv", dtype=str, keep_default_na=False)
    assert ds.items["item"].tolist() == meta["asin"].tolist()
    assert ds.meta["input_hashes"] == {
        n: sources.PRIME_PANTRY_FILES[n] for n in ("Prime_Pantry_cleaned_history.csv", "metadata_Prime_Pantry.csv")
    }


# ---------------------------------------------------------------- as_of and dated partitions

DAYS = {  # partition -> rows (user, item, ISO time); u1 and u2 each have two interactions a day
    "2026-11-28": [("u1", "a", "2026-11-28T08:00:00Z"), ("u2", "b", "2026-11-28T09:00:00Z"),
                   ("u1", "c", "2026-11-28T10:00:00Z"), ("u2", "d", "2026-11-28T11:00:00Z")],
    "2026-11-29": [("u1", "b", "2026-11-29T08:00:00Z"), ("u2", "a", "2026-11-29T09:00:00Z"),
                   ("u1", "d", "2026-11-29T13:00:00Z"), ("u2", "c", "2026-11-29T14:00:00Z")],
    "2026-11-30": [("u1", "e", "2026-11-30T08:00:00Z"), ("u2", "e", "2026-11-30T09:00:00Z")],
}


def write_partitions(folder: Path) -> Path:
    """items.csv + interactions/date=.../ with a CSV and a Parquet file on the 29th, and marker files to skip."""
    folder.mkdir(parents=True)
    ITEMS.to_csv(folder / "items.csv", index=False)
    for day, rows in DAYS.items():
        part = folder / "interactions" / f"date={day}"
        part.mkdir(parents=True)
        df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
        if day == "2026-11-29":
            df.iloc[:2].to_csv(part / "a.csv", index=False)
            df.iloc[2:].to_parquet(part / "b.parquet", index=False)
        else:
            df.to_csv(part / "part-0.csv", index=False)
        (part / "_SUCCESS").write_text("")
    return folder


def expected(as_of: str | None) -> dict[str, list[str]]:
    """The sequences by an independent filter of the rows."""
    rows = [r for day in DAYS.values() for r in day]
    if as_of:
        rows = [r for r in rows if pd.Timestamp(r[2]) <= pd.Timestamp(as_of)]
    out: dict[str, list[str]] = {}
    for user, item, _ in sorted(rows, key=lambda r: (r[0], r[2])):
        out.setdefault(user, []).append(item)
    return out


@pytest.mark.parametrize("where", ["local", "gcs"])
@pytest.mark.parametrize("as_of", [None, "2026-11-29T12:00:00Z", "2026-11-29"])
def test_dated_partitions_up_to_as_of(tmp_path, request, where, as_of):
    local = write_partitions(tmp_path / "shop")
    location = str(local)
    if where == "gcs":
        bucket = request.getfixturevalue("gcs").create_bucket("logs")
        for p in local.rglob("*"):
            if p.is_file():
                bucket.blob(f"shop/{p.relative_to(local)}").upload_from_filename(str(p))
        location = "gs://logs/shop"
    raw = load_source(f"files:{location}", as_of)
    read = {k.split("/")[1] for k in raw.input_hashes if k.startswith("interactions/")}
    # a date alone is the end of that day; the 30th is never read before its day
    assert read == ({"date=2026-11-28", "date=2026-11-29"} if as_of else set(f"date={d}" for d in DAYS))
    assert raw.interactions_file == f"{location}/interactions"
    ds = build_dataset(raw, Protocol(min_len=3), as_of)
    bound = "2026-11-29T23:59:59.999999999Z" if as_of == "2026-11-29" else as_of
    assert seqs(ds) == expected(bound)
    assert ds.meta["as_of"] == (pd.Timestamp(bound).isoformat() if as_of else None)


def test_as_of_with_numeric_timestamps(tmp_path):
    inter = INTERACTIONS.drop(columns="rating").assign(timestamp=INTERACTIONS["timestamp"] * 86_400)  # days -> seconds
    raw = load_source(f"files:{write_folder(tmp_path / 'shop', 'csv', inter)}")
    # u1: d@1 c@2 b@3 e@4 a@5 a@6 (days); u2: b@1 d@2 a@3 c@4 e@5
    kept = build_dataset(raw, Protocol(min_len=3), str(4 * 86_400))  # a number: the data's own unit
    assert seqs(kept) == {"u1": ["d", "c", "b", "e"], "u2": ["b", "d", "a", "c"]}
    as_date = build_dataset(raw, Protocol(min_len=3), "1970-01-05")  # a date: Unix seconds, up to the end of Jan 5th
    assert seqs(as_date) == seqs(kept)
    with pytest.raises(PadError, match="no interaction is stamped at or before as_of"):
        build_dataset(raw, Protocol(min_len=3), "1969-12-31")
    with pytest.raises(PadError, match="as_of 'yesterday': expected an ISO 8601 date"):
        build_dataset(raw, Protocol(min_len=3), "yesterday")


def test_partition_errors_name_the_file(tmp_path, capsys):
    folder = write_partitions(tmp_path / "shop")
    pd.DataFrame([("u1", "zzz", "2026-11-29T20:00:00Z")], columns=["user", "item", "timestamp"]).to_csv(
        folder / "interactions" / "date=2026-11-29" / "c.csv", index=False)
    with pytest.raises(PadError, match=r"shop/interactions/date=2026-11-29/c.csv row 2: item 'zzz' is not in"):
        build_dataset(load_source(f"files:{folder}"), Protocol(min_len=3))
    (folder / "interactions" / "old").mkdir()
    assert main(["preprocess", "--source", f"files:{folder}", "--out", str(tmp_path / "out"), "--as-of", "2026-11-28"]) == 2
    assert "interactions/old: expected only partition folders date=YYYY-MM-DD" in capsys.readouterr().err
    (folder / "interactions" / "old").rmdir()
    assert main(["preprocess", "--source", f"files:{folder}", "--out", str(tmp_path / "out"), "--as-of", "2026-11-01"]) == 2
    assert "no partition data file" in capsys.readouterr().err
    assert main(["preprocess", "--source", f"files:{folder}", "--out", str(tmp_path / "out"), "--min-len", "3",
                 "--as-of", "2026-11-28T10:30:00Z"]) == 2  # one interaction each: no user left
    assert main(["preprocess", "--source", f"files:{folder}", "--out", str(tmp_path / "out"), "--min-len", "3",
                 "--as-of", "2026-11-29T12:00:00Z"]) == 0
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["as_of"] == "2026-11-29T12:00:00+00:00"
