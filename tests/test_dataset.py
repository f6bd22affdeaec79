"""The protocol and the dataset artifact, against hand-computed and brute-force references."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import padcore.dataset as dataset_module
from padcore.dataset import (
    GROUPS,
    Protocol,
    RawData,
    build_dataset,
    load_dataset,
    mass_bins,
    summary,
    train_frequency,
    write_dataset,
)
from padcore.errors import PadError

# Items file order: item_idx follows it, skipping unused items.
ITEMS = ["i5", "i1", "i7", "i2", "i3", "i8", "i4", "i6", "i9"]
# (user, item, timestamp) rows, deliberately not in time order.
ROWS = [
    ("B", "i2", 30),
    ("A", "i6", 600),
    ("B", "i5", 10),
    ("A", "i8", 100),  # A's oldest: cut by the latest-(max_len+3) truncation
    ("C", "i7", 1),  # C has 3 interactions < min_len: dropped
    ("B", "i1", 20),  # tie with the next B row: file order decides
    ("B", "i5", 20),
    ("A", "i3", 300),
    ("C", "i7", 2),
    ("A", "i2", 200),
    ("A", "i5", 500),
    ("C", "i1", 3),
    ("A", "i4", 400),
]


def hand_raw(rows=ROWS, items=ITEMS) -> RawData:
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    inter.index = inter.index + 2  # CSV line numbers
    table = pd.DataFrame({"item": items, "text": [f"title of {i}" for i in items]})
    table.index = table.index + 2
    return RawData(inter, table, "inter.csv", "items.csv", "hand")


def test_protocol_on_a_hand_computed_log():
    ds = build_dataset(hand_raw(), Protocol(max_len=2, min_len=4, buckets=2))
    # Used items in file order: i5 i1 i2 i3 i4 i6 -> 1..6 (i7 only by C, i8 only truncated, i9 never).
    assert ds.items["item"].tolist() == ["i5", "i1", "i2", "i3", "i4", "i6"]
    assert ds.items["item_idx"].tolist() == [1, 2, 3, 4, 5, 6]
    assert ds.items["text"].tolist() == [f"title of {i}" for i in ["i5", "i1", "i2", "i3", "i4", "i6"]]
    # Users in order of first appearance; B: i5@10, i1@20, i5@20 (tie, file order), i2@30.
    assert ds.users.tolist() == ["B", "A"]
    assert ds.sequence(0).tolist() == [1, 2, 1, 3]
    # A: i8 i2 i3 i4 i5 i6 by time, truncated to the latest max_len + 3 = 5.
    assert ds.sequence(1).tolist() == [3, 4, 5, 1, 6]
    assert ds.offsets.tolist() == [0, 4, 9]
    # Train frequency counts seq[:-2]: B -> [1, 2], A -> [3, 4, 5].
    assert ds.items["freq"].tolist() == [1, 1, 1, 1, 1, 0]
    m = ds.meta
    assert (m["n_users"], m["n_items"], m["n_interactions"]) == (2, 6, 9)
    # Targets at l-2 / l-1 / l: train targets are positions 2..l-2 of each sequence.
    assert m["splits"] == {"train_targets": 1 + 2, "valid_targets": 2, "test_targets": 2}
    # Five items of freq 1 split into two bins of equal mass: mids 0.5 1.5 | 2.5 3.5 4.5 of 5.
    assert ds.items["bucket"].tolist() == [1, 1, 2, 2, 2, 2]
    assert ds.meta["protocol"] == {"max_len": 2, "min_len": 4, "buckets": 2}


def test_exactly_min_len_is_kept_and_max_len_plus_3_untruncated():
    rows = [("u", f"i{k}", k) for k in range(7)] + [("v", "i0", 1), ("v", "i1", 2), ("v", "i2", 3)]
    items = [f"i{k}" for k in range(7)]
    ds = build_dataset(hand_raw(rows, items), Protocol(max_len=4, min_len=3))
    assert ds.users.tolist() == ["u", "v"]
    assert ds.sequence(0).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert ds.sequence(1).tolist() == [1, 2, 3]


def brute_force_bins(freq, n_bins):
    """Reference: walk items from warmest to coldest, filling bins by the midpoint of each item's mass."""
    order = sorted(range(len(freq)), key=lambda i: (-freq[i], i))
    total, seen, out = sum(freq), 0.0, [0] * len(freq)
    for i in order:
        if freq[i] == 0:
            out[i] = n_bins
        else:
            out[i] = min(int((seen + freq[i] / 2) * n_bins / total), n_bins - 1) + 1
        seen += freq[i]
    return out


def test_mass_bins_by_hand():
    assert mass_bins(np.array([10, 0, 5, 5, 0]), 2).tolist() == [1, 2, 2, 2, 2]
    # Ties straddling a boundary are split by position.
    assert mass_bins(np.array([5, 5, 5, 5]), 2).tolist() == [1, 1, 2, 2]
    # One item heavier than a bin's share leaves bin numbers unused.
    assert mass_bins(np.array([100, 1, 1]), 4).tolist() == [2, 4, 4]
    # Nothing seen in training: everything is coldest.
    assert mass_bins(np.zeros(3), 5).tolist() == [5, 5, 5]
    assert mass_bins(np.array([]), 3).tolist() == []


@pytest.mark.parametrize("seed", range(5))
def test_mass_bins_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    freq = rng.zipf(1.6, size=200) * (rng.random(200) > 0.2)
    bins = mass_bins(freq, 10)
    assert bins.tolist() == brute_force_bins(freq.tolist(), 10)
    # Bins are monotone: a warmer bin never holds a colder item.
    order = np.lexsort((np.arange(len(freq)), -freq))
    assert np.all(np.diff(bins[order]) >= 0)


def test_frequency_buckets_and_groups_of_a_random_log(synthetic_raw):
    raw = synthetic_raw(n_users=400, n_items=80, seed=3)
    ds = build_dataset(raw, Protocol(max_len=10, buckets=5))
    freq = np.zeros(ds.n_items + 1, dtype=np.int64)
    for u in range(ds.n_users):
        for i in ds.sequence(u)[:-2]:
            freq[i] += 1
    assert ds.items["freq"].tolist() == freq[1:].tolist()
    assert ds.items["bucket"].tolist() == brute_force_bins(freq[1:].tolist(), 5)
    groups = np.asarray(GROUPS)[np.asarray(brute_force_bins(freq[1:].tolist(), 3)) - 1]
    assert ds.items["group"].tolist() == groups.tolist()
    b = {x["name"]: x for x in ds.meta["buckets"]}
    assert sum(x["items"] for x in b.values()) == ds.n_items
    assert b[1]["min_freq"] >= b[2]["max_freq"]  # bucket 1 is the warmest


def test_sequences_against_a_brute_force_reference(synthetic_raw):
    raw = synthetic_raw(n_users=200, n_items=40, seed=1)
    protocol = Protocol(max_len=6, min_len=5)
    ds = build_dataset(raw, protocol)
    expect = {}
    for user, g in raw.interactions.groupby("user", sort=False):
        if len(g) >= protocol.min_len:
            expect[user] = g.sort_values("timestamp")["item"].tolist()[-protocol.keep_last :]
    key = dict(zip(ds.items["item_idx"], ds.items["item"]))
    got = {u: [key[i] for i in ds.sequence(k)] for k, u in enumerate(ds.users)}
    assert got == expect
    assert list(ds.users) == list(expect)  # first appearance order
    assert np.array_equal(train_frequency(ds.n_items, ds.offsets, ds.flat), ds.items["freq"].to_numpy())


def test_timestamps_as_dates_numbers_in_text_and_integer_ids():
    dates = [("u", "b", "2024-01-03T00:00:00Z"), ("u", "a", "2024-01-01"), ("u", "c", "2024-01-02 12:00")]
    ds = build_dataset(hand_raw(dates, ["a", "b", "c"]), Protocol(min_len=3))
    assert ds.sequence(0).tolist() == [1, 3, 2]
    texts = [("u", "b", "20"), ("u", "a", "3"), ("u", "c", "100")]
    ds = build_dataset(hand_raw(texts, ["a", "b", "c"]), Protocol(min_len=3))
    assert ds.sequence(0).tolist() == [1, 2, 3]  # numeric, not lexicographic
    ints = hand_raw([(7, 30, 2.5), (7, 10, 1.5), (7, 20, 3.5)], [10, 20, 30])
    assert build_dataset(ints, Protocol(min_len=3)).sequence(0).tolist() == [1, 3, 2]
    mixed = hand_raw([(7, "30", 1), (7, "10", 2), (7, "20", 3)], [10, 20, 30])  # str history, int items
    ds = build_dataset(mixed, Protocol(min_len=3))
    assert ds.sequence(0).tolist() == [3, 1, 2] and ds.items["item"].tolist() == ["10", "20", "30"]
    python_objects = hand_raw([(7, 30, 1), (7, "10", 2), (7, "20", 3)], ["10", 20, "30"])  # mixed within a column
    assert build_dataset(python_objects, Protocol(min_len=3)).sequence(0).tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    "raw, message",
    [
        (hand_raw(items=ITEMS[:-1] + ["i5"]), r"items.csv row 10: duplicate item id 'i5'"),
        (hand_raw(rows=ROWS + [("A", "zz", 700)]), r"inter.csv row 15: item 'zz' is not in items.csv \(1 interaction"),
        (hand_raw(rows=ROWS + [("A", None, 700)]), r"inter.csv row 15: empty field 'item'"),
        (hand_raw(rows=ROWS + [(None, "i1", 700)]), r"inter.csv row 15: empty field 'user'"),
        (hand_raw(rows=ROWS + [("A", "i1", "noon")]), r"inter.csv row 15: field 'timestamp' is 'noon'"),
        (hand_raw(rows=ROWS[:1]), r"inter.csv: no user has 5 or more interactions; nothing left after filtering"),
        (hand_raw(rows=[]), r"inter.csv: no interactions"),
    ],
)
def test_bad_inputs_name_file_and_row(raw, message):
    with pytest.raises(PadError, match=message):
        build_dataset(raw, Protocol())


@pytest.mark.parametrize("text", [None, "", "   "])
def test_item_without_text(text):
    raw = hand_raw()
    raw.items.loc[3, "text"] = text
    with pytest.raises(PadError, match=r"items.csv row 3: item 'i1' has no text \(field 'text'\)"):
        build_dataset(raw, Protocol())


def test_missing_columns():
    raw = hand_raw()
    raw.items = raw.items.rename(columns={"text": "title"})
    with pytest.raises(PadError, match=r"items.csv: missing column 'text'"):
        build_dataset(raw)
    raw = hand_raw()
    raw.interactions = raw.interactions.drop(columns="timestamp")
    with pytest.raises(PadError, match=r"inter.csv: missing column 'timestamp'"):
        build_dataset(raw)


def test_protocol_rejects_nonsense():
    with pytest.raises(PadError, match="preprocess option 'min_len' is 2; allowed: 3 <= value"):
        Protocol(min_len=2)
    with pytest.raises(PadError, match="preprocess option 'buckets' is 0; allowed: 1 <= value"):
        Protocol(buckets=0)
    with pytest.raises(PadError, match="preprocess option 'max_len' is 2.5; expected a whole number"):
        Protocol.from_options(max_len=2.5)


def test_write_load_round_trip(make_dataset):
    ds = make_dataset(n_users=120, n_items=30, buckets=4)
    back = load_dataset(ds.path)
    pd.testing.assert_frame_equal(back.items, ds.items, check_dtype=False)
    assert np.array_equal(back.offsets, ds.offsets) and np.array_equal(back.flat, ds.flat)
    assert back.users.tolist() == ds.users.tolist()
    assert back.meta == json.loads(json.dumps(ds.meta))
    assert back.item_column("bucket")[0] == 0 and back.item_column("bucket")[1:].tolist() == ds.items["bucket"].tolist()
    assert f"users         {ds.n_users:,}" in summary(back)


def test_dataset_id_follows_content(make_dataset):
    a, b, c = make_dataset(seed=0), make_dataset(seed=0), make_dataset(seed=1)
    assert a.dataset_id == b.dataset_id != c.dataset_id
    assert a.item_hash == b.item_hash


def test_load_rejects_damaged_artifacts(make_dataset):
    ds = make_dataset(n_users=60, n_items=20)
    meta = json.loads((ds.path / "meta.json").read_text())
    (ds.path / "meta.json").write_text(json.dumps({**meta, "n_users": 1}))
    with pytest.raises(PadError, match=r"meta.json: field 'n_users' is 1, the files hold"):
        load_dataset(ds.path)
    (ds.path / "meta.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(PadError, match=r"format 'other/9'"):
        load_dataset(ds.path)
    (ds.path / "meta.json").write_text(json.dumps(meta))
    (ds.path / "items.parquet").unlink()
    with pytest.raises(PadError, match=r"items.parquet: missing from the dataset artifact"):
        load_dataset(ds.path)
    with pytest.raises(PadError, match="meta.json: missing"):
        load_dataset(ds.path.parent / "nowhere")


def test_failed_write_leaves_the_previous_artifact(make_dataset, synthetic_raw, monkeypatch):
    old = make_dataset(seed=0)
    before = {p.name: p.read_bytes() for p in old.path.iterdir()}
    new = build_dataset(synthetic_raw(seed=5))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(new, old.path)
    assert {p.name: p.read_bytes() for p in old.path.iterdir()} == before
    assert sorted(p.name for p in old.path.parent.iterdir() if p.name.startswith(".")) == []
