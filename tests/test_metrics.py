"""Full-ranking HR/nDCG against a brute-force ranking."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from padcore.dataset import Dataset
from padcore.metrics import (UNREACHABLE, full_ranking_metrics, hit_ndcg, linear_target_ranks, linear_top_k, target_ranks,
                             top_k)


def brute_rank(scores: np.ndarray, target: int, history: list[int]) -> int:
    excluded = set(history) | {0}
    if target in excluded:
        return UNREACHABLE
    candidates = [(s, i) for i, s in enumerate(scores) if i not in excluded]
    return sum(1 for s, i in candidates if s > scores[target])


def test_ranks_match_brute_force_with_history_exclusion():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    scores = rng.normal(size=(n_users, n_items + 1)).round(1)  # rounding makes ties
    targets = rng.integers(1, n_items + 1, n_users)
    history = rng.integers(0, n_items + 1, (n_users, 6))
    history[:5, 0] = targets[:5]  # some targets are repeat items: never a hit
    got = target_ranks(torch.tensor(scores), torch.tensor(targets), torch.tensor(history)).numpy()
    want = [brute_rank(scores[u], targets[u], history[u].tolist()) for u in range(n_users)]
    assert got.tolist() == want
    assert (got[:5] == UNREACHABLE).all()


def test_ranks_across_count_blocks():
    # more items than one int16 counting block holds
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 70_001)).round(2)
    targets, history = np.array([1, 33_000, 65_536, 70_000]), rng.integers(0, 70_001, (4, 20))
    got = target_ranks(torch.tensor(scores), torch.tensor(targets), torch.tensor(history)).numpy()
    for u in range(4):
        keep = np.ones(70_001, bool)
        keep[[0, *history[u]]] = False
        assert got[u] == (scores[u][keep] > scores[u, targets[u]]).sum()


def test_padding_column_is_never_ranked():
    scores = torch.tensor([[100.0, 1.0, 2.0, 3.0]])
    ranks = target_ranks(scores, torch.tensor([3]), torch.tensor([[0]]))
    assert ranks.item() == 0


def test_hit_ndcg_values():
    hit, ndcg = hit_ndcg(np.array([0, 1, 9, 10, 500, UNREACHABLE]), 10)
    assert hit.tolist() == [1, 1, 1, 0, 0, 0]
    assert np.allclose(ndcg, [1.0, 1 / math.log2(3), 1 / math.log2(11), 0, 0, 0])


def test_metrics_groups_and_buckets():
    items = pd.DataFrame({
        "item_idx": [1, 2, 3], "item": ["a", "b", "c"], "text": ["x"] * 3, "freq": [5, 3, 1],
        "bucket": np.array([1, 2, 2], dtype=np.int16), "group": ["warm", "median", "cold"],
    })
    ds = Dataset(items, np.array(["u"]), np.array([0]), np.array([], dtype=np.int32), {"protocol": {"buckets": 2}})
    ranks = np.array([0, UNREACHABLE, 3, 1])
    targets = np.array([1, 2, 3, 3])
    m = full_ranking_metrics(ranks, targets, ds)
    assert m["hr@10"] == 75.0
    assert m["repeat_targets"] == 1
    assert m["groups"]["warm"] == {"hr@10": 100.0, "ndcg@10": 100.0, "users": 1}
    assert m["groups"]["median"]["hr@10"] == 0.0
    assert m["groups"]["cold"]["users"] == 2
    assert m["groups"]["cold"]["ndcg@10"] == 100 * (1 / math.log2(5) + 1 / math.log2(3)) / 2
    assert [b["users"] for b in m["buckets"]] == [1, 3]


@pytest.mark.parametrize("block", [1, 7, 40, 1000])
def test_linear_target_ranks_match_the_whole_score_matrix(block):
    """Blocked counting gives target_ranks' ranks, ties (duplicate items), history and padding included."""
    rng = np.random.default_rng(5)
    table = torch.tensor(rng.integers(-2, 3, (61, 4)), dtype=torch.float32)  # few distinct rows: many exact ties
    table[30:40] = table[0]  # duplicates of the padding row
    users = torch.tensor(rng.integers(-2, 3, (50, 4)), dtype=torch.float32)
    targets = torch.tensor(rng.integers(1, 61, 50))
    history = torch.tensor(rng.integers(0, 61, (50, 9)))
    history[:5, 3] = targets[:5]  # targets already seen: unreachable
    want = target_ranks(users @ table.T, targets, history)
    assert torch.equal(linear_target_ranks(users, table, targets, history, block), want)
    assert (want[:5] == UNREACHABLE).all() and (want < 61).sum() > 20  # the world holds both kinds


def brute_top_k(scores: np.ndarray, history: list[int], k: int) -> list[int]:
    """Items by score descending, then item_idx ascending, padding and history left out."""
    excluded = set(history) | {0}
    ranked = sorted((i for i in range(len(scores)) if i not in excluded), key=lambda i: (-scores[i], i))
    return ranked[:k]


@pytest.mark.parametrize("world", ["rounded", "few values", "history on top"])
def test_top_k_matches_brute_force_with_ties_and_history(world):
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(30, 41)).round(1).astype(np.float32)  # rounding makes ties
    scores[:3] = -np.abs(scores[:3])  # all-negative rows
    history = rng.integers(0, 41, (30, 7))
    if world == "few values":  # ties everywhere, across the k-th place too
        scores = rng.integers(0, 3, (30, 41)).astype(np.float32)
    if world == "history on top":  # the best-scored items are the history, repeated, and padding
        history = np.argsort(-scores, 1)[:, :7]
        history[:, 5:] = history[:, :2]
        scores[:, 0] = 99.0
    items, values = top_k(torch.tensor(scores), torch.tensor(history), 10)
    for u in range(30):
        want = brute_top_k(scores[u], history[u].tolist(), 10)
        assert items[u].tolist() == want
        assert np.array_equal(values[u].numpy(), scores[u, want])


@pytest.mark.parametrize("block", [1, 6, 40, 1000])
@pytest.mark.parametrize("k", [3, 10, 70])
def test_linear_top_k_matches_top_k_of_the_whole_score_matrix(block, k):
    """Merged blocks give top_k's lists exactly: ties across blocks, history, padding, k above the candidates."""
    rng = np.random.default_rng(6)
    table = torch.tensor(rng.integers(-2, 3, (61, 4)), dtype=torch.float32)
    table[30:40] = table[0]
    users = torch.tensor(rng.integers(-2, 3, (50, 4)), dtype=torch.float32)
    history = torch.tensor(rng.integers(0, 61, (50, 9)))
    want_items, want_values = top_k(users @ table.T, history, k)
    items, values = linear_top_k(users, table, history, k, block)
    assert torch.equal(items, want_items) and torch.equal(values, want_values)


def test_top_k_agrees_with_target_ranks():
    """The item at position p of the list has evaluation rank p (no ties), so recommending and evaluating agree."""
    rng = np.random.default_rng(3)
    scores = torch.tensor(rng.normal(size=(8, 200)), dtype=torch.float32)
    history = torch.tensor(rng.integers(0, 200, (8, 12)))
    items, _ = top_k(scores, history, 20)
    for p in range(20):
        ranks = target_ranks(scores, items[:, p], history)
        assert ranks.tolist() == [p] * 8


def test_top_k_with_fewer_candidates_than_k():
    scores = torch.tensor([[9.0, 1.0, 3.0, 2.0]])
    items, values = top_k(scores, torch.tensor([[2]]), 5)
    assert items.tolist() == [[3, 1, 0, 0, 0]]
    assert values[0, :2].tolist() == [2.0, 1.0] and torch.isinf(values[0, 2:]).all()
