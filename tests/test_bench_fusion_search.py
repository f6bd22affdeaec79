"""bench/fusion_search.py: its nDCG@10 of a per-bucket fusion against brute force, and its search."""

import numpy as np
import pytest
import torch

from conftest import bench_module
from padcore.batches import EvalSplit


@pytest.fixture(scope="module")
def search_bench():
    with bench_module("fusion_search") as module:
        yield module


def world(seed=0, experts=3, users=40, items=30, n_buckets=3):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(experts, users, items + 1, generator=g)
    history = torch.randint(0, items + 1, (users, 5), generator=g)  # 0 = padding
    targets = torch.randint(1, items + 1, (users,), generator=g)
    buckets = torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(1, n_buckets + 1, (items,), generator=g)])
    return scores, EvalSplit(torch.zeros(users, 4, dtype=torch.long), targets, history), buckets


def brute_ndcg(scores, coef, buckets, split, rows):
    s, c, b = scores.numpy(), coef.numpy(), buckets.numpy()
    total = 0.0
    for u in rows.tolist():
        fused = sum(c[b, e] * s[e, u] for e in range(s.shape[0]))
        seen = set(split.history[u].tolist()) - {0}
        t = int(split.targets[u])
        if t in seen:
            continue
        rank = sum(1 for i in range(1, len(fused)) if i not in seen and fused[i] > fused[t])
        total += 1 / np.log2(rank + 2) if rank < 10 else 0.0
    return 100 * total / len(rows)


def test_ndcg_of_a_bucket_fusion_matches_brute_force(search_bench):
    scores, split, buckets = world()
    rows = torch.arange(5, 40)
    for coef in (torch.ones(4, 3), torch.rand(4, 3, generator=torch.Generator().manual_seed(1))):
        assert search_bench.ndcg(scores, coef, buckets, split, rows) == pytest.approx(
            brute_ndcg(scores, coef, buckets, split, rows), abs=1e-9)


def test_the_search_turns_down_an_expert_that_buries_the_targets(search_bench):
    scores, split, buckets = world(seed=2)
    users = torch.arange(40)
    scores[0, users, split.targets] = 100.0  # expert 0 puts every target first
    scores[2, users, split.targets] = -150.0  # expert 2 buries it: at equal weights no target is near the top
    equal = torch.ones(4, 3)
    start = search_bench.ndcg(scores, equal, buckets, split, users)
    coef, best = search_bench.search(scores, equal, buckets, split, users, sweeps=1)
    assert best > start + 50
    assert best == pytest.approx(brute_ndcg(scores, coef, buckets, split, users))
    held = buckets[split.targets].unique()
    assert (coef[held, 2] < coef[held, 0]).all(), "where the targets are, the burying expert weighs less"


def test_the_in_sample_fit_is_phase_3s_own_fit_and_leaves_the_model_as_it_was(search_bench):
    from padcore.config import TrainConfig
    from padcore.experts import PadModel, build_expert
    from padcore.fusion import BucketGate

    torch.manual_seed(0)
    cfg = TrainConfig(dim=8, dropout=0.0, epochs=8, patience=8, batch_size=16, fusion_lr=0.5)
    items, users, g = 30, 60, torch.Generator().manual_seed(3)
    buckets = torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(1, 4, (items,), generator=g)])
    experts = {"id": build_expert("id", cfg, items, 5, None), "other": build_expert("id", cfg, items, 5, None)}
    model = PadModel(experts, BucketGate(2, buckets, 3)).eval()
    split = EvalSplit(torch.randint(1, items + 1, (users, 5), generator=g),
                      torch.randint(1, items + 1, (users,), generator=g), torch.zeros(users, 1, dtype=torch.long))
    experts = search_bench.frozen(model, split)
    scores = experts.kept
    start = {k: v.clone() for k, v in model.fusion.state_dict().items()}
    rows = torch.arange(users)
    coef, best = search_bench.fitted_in_sample(model, experts, cfg, split, rows)
    assert all(torch.equal(v, start[k]) for k, v in model.fusion.state_dict().items()), "the fusion is restored"
    assert not torch.allclose(coef, search_bench.coefficients(model.fusion)), "the fit moved the coefficients"
    # the coefficients score as the fitted model scored itself, and the fit kept its best epoch (>= its start)
    assert search_bench.ndcg(scores, coef, buckets, split, rows) == pytest.approx(best, abs=1e-6)
    assert best >= search_bench.ndcg(scores, search_bench.coefficients(model.fusion), buckets, split, rows) - 1e-9
