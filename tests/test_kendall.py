"""Kendall's tau over behaviour-target distances: vs SciPy and a brute-force count, pairs, buckets."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from padcore import kendall
from padcore.dataset import Dataset
from padcore.kendall import Pairs, behaviour_target_pairs, kendall_tau, pair_distances, tau_by_bucket


def brute_tau_b(x, y) -> float:
    """Tau-b by counting every pair of samples: (C - D) / sqrt((n0 - ties_x)(n0 - ties_y))."""
    n = len(x)
    conc = disc = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            ties_x += dx == 0
            ties_y += dy == 0
            conc += dx * dy > 0
            disc += dx * dy < 0
    n0 = n * (n - 1) / 2
    return (conc - disc) / np.sqrt((n0 - ties_x) * (n0 - ties_y))


@pytest.mark.parametrize("seed", range(5))
def test_tau_matches_scipy_and_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # few distinct values: many ties
    y = x + rng.integers(-3, 4, 40)
    got = kendall_tau(x, y, min_pairs=2)
    assert got.status == "ok" and got.used == got.pairs == 40
    assert got.tau == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert got.tau == pytest.approx(brute_tau_b(x, y), abs=1e-12)


def test_tau_without_ties_is_eq_13():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    s = np.sign(x[:, None] - x[None]) * np.sign(y[:, None] - y[None])
    eq13 = s[np.triu_indices(30, 1)].mean()  # (concordant - discordant) / pairs
    assert kendall_tau(x, y, min_pairs=2).tau == pytest.approx(eq13, abs=1e-12)


def test_subsample_above_max_pairs_is_seeded_and_reported():
    rng = np.random.default_rng(2)
    x = rng.normal(size=5000)
    y = x + rng.normal(size=5000)
    a = kendall_tau(x, y, max_pairs=1000, seed=7)
    assert (a.pairs, a.used) == (5000, 1000)
    assert kendall_tau(x, y, max_pairs=1000, seed=7).tau == a.tau
    assert kendall_tau(x, y, max_pairs=1000, seed=8).tau != a.tau
    assert a.tau == pytest.approx(kendall_tau(x, y).tau, abs=0.06)


def test_too_few_and_constant_are_reported_not_dropped():
    few = kendall_tau(np.arange(5.0), np.arange(5.0), min_pairs=10)
    assert (few.tau, few.pairs, few.status) == (None, 5, "too few pairs")
    flat = kendall_tau(np.ones(50), np.arange(50.0), min_pairs=10)
    assert flat.tau is None and flat.status.startswith("undefined")


def test_pair_distances_match_numpy_in_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    table = rng.normal(size=(20, 7)).astype(np.float32)
    b, t = rng.integers(1, 20, 101), rng.integers(1, 20, 101)
    monkeypatch.setattr(kendall, "CHUNK_VALUES", 7 * 10)  # 10 pairs per chunk
    got = pair_distances(table, b, t)
    want = np.linalg.norm(table[b].astype(np.float64) - table[t].astype(np.float64), axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def hand_dataset(max_len: int = 2) -> Dataset:
    """Items 1..5 with buckets [1, 1, 2, 3, 3]; users [1,2,3,4], [5,1,3], [1,2,5,4,1]."""
    items = pd.DataFrame({"item_idx": np.arange(1, 6), "bucket": [1, 1, 2, 3, 3]})
    seqs = [[1, 2, 3, 4], [5, 1, 3], [1, 2, 5, 4, 1]]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    flat = np.concatenate(seqs).astype(np.int32)
    return Dataset(items, np.array(["a", "b", "c"], dtype=object), offsets, flat, {"protocol": {"max_len": max_len}})


def test_pairs_are_the_evaluation_window_before_the_test_target():
    p = behaviour_target_pairs(hand_dataset(max_len=2))
    got = sorted(zip(p.behaviour.tolist(), p.target.tolist(), p.bucket.tolist()))
    # user a: inputs [2, 3] -> 4 (bucket 3); b: [5, 1] -> 3 (bucket 2); c: [5, 4] -> 1 (bucket 1)
    assert got == sorted([(2, 4, 3), (3, 4, 3), (5, 3, 2), (1, 3, 2), (5, 1, 1), (4, 1, 1)])
    assert p.self_pairs == 0
    longer = behaviour_target_pairs(hand_dataset(max_len=2), max_len=10)
    assert len(longer) == 3 + 2 + 3 and longer.self_pairs == 1  # user c's input 1 -> target 1 is left out


def test_buckets_split_pairs_by_the_target_bucket():
    # bucket 1: B keeps A's order; bucket 2: B reverses it; bucket 3: one pair only
    a = np.array([1.0, 2, 3, 4, 10, 20, 30, 5])
    b = np.array([1.0, 2, 3, 4, 30, 20, 10, 5])
    bucket = np.array([1, 1, 1, 1, 2, 2, 2, 3])
    res = tau_by_bucket(a, b, bucket, 4, min_pairs=3)
    taus = {r["bucket"]: (r["tau"], r["pairs"], r["status"]) for r in res["buckets"]}
    assert taus[1] == (pytest.approx(1.0), 4, "ok")
    assert taus[2] == (pytest.approx(-1.0), 3, "ok")
    assert taus[3] == (None, 1, "too few pairs")
    assert taus[4] == (None, 0, "too few pairs")
    assert res["overall"]["pairs"] == 8


def random_pairs(n_items: int, n: int, n_buckets: int, seed: int) -> Pairs:
    rng = np.random.default_rng(seed)
    target = rng.integers(1, n_items + 1, n)
    return Pairs(rng.integers(1, n_items + 1, n), target, (target % n_buckets) + 1)


def test_monotone_transform_gives_tau_one_and_random_gives_zero():
    rng = np.random.default_rng(4)
    n_items, n_buckets = 300, 5
    a = rng.normal(size=(n_items + 1, 16))
    pairs = random_pairs(n_items, 20000, n_buckets, 5)
    da = pair_distances(a, pairs.behaviour, pairs.target)
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    rotated = np.hstack([a, np.zeros((n_items + 1, 8))]) @ q  # wider table, same distances
    for b in (3.0 * a, rotated):
        res = tau_by_bucket(da, pair_distances(b, pairs.behaviour, pairs.target), pairs.bucket, n_buckets)
        assert res["overall"]["tau"] == pytest.approx(1.0, abs=1e-9)
        assert all(r["tau"] == pytest.approx(1.0, abs=1e-9) for r in res["buckets"])
    other = rng.normal(size=(n_items + 1, 8))
    res = tau_by_bucket(da, pair_distances(other, pairs.behaviour, pairs.target), pairs.bucket, n_buckets)
    assert abs(res["overall"]["tau"]) < 0.03
    assert all(abs(r["tau"]) < 0.06 for r in res["buckets"])


@pytest.mark.realdata
def test_prime_pantry_pairs(tmp_path):
    import os
    from pathlib import Path

    from pad.cli import main
    from padcore.dataset import load_dataset

    if not (Path(os.environ.get("PAD_DATA_HOME", "")) / "prime_pantry").is_dir():
        pytest.skip("PAD_DATA_HOME holds no prime_pantry release")
    assert main(["preprocess", "--source", "prime_pantry", "--out", str(tmp_path / "pp")]) == 0
    ds = load_dataset(tmp_path / "pp")
    p = behaviour_target_pairs(ds)
    want, selfs = [], 0
    for u in range(ds.n_users):  # the plain per-user loop the vectorised version replaces
        seq = ds.sequence(u)
        target, inputs = int(seq[-1]), seq[:-1][-20:]
        selfs += int((inputs == target).sum())
        want += [(int(b), target) for b in inputs if b != target]
    assert sorted(zip(p.behaviour.tolist(), p.target.tolist())) == sorted(want) and p.self_pairs == selfs
    assert np.array_equal(p.bucket, ds.items["bucket"].to_numpy()[p.target - 1])
