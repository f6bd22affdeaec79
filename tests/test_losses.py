"""Alignment and recommendation losses against independent NumPy references."""

import numpy as np
import pytest
import torch

from padcore.config import TrainConfig
from padcore.losses import alignment_loss, bce_loss, mmd2, sample_negatives


def np_mmd2(x: np.ndarray, y: np.ndarray, kernel: str, m: int = 5) -> float:
    """Biased MMD² computed pair by pair."""
    z = np.concatenate([x, y])
    n2 = len(z)
    sq = np.array([[np.sum((a - b) ** 2) for b in z] for a in z])
    l1 = np.array([[np.sum(np.abs(a - b)) for b in z] for a in z])

    def k(i: int, j: int) -> float:
        if kernel == "gaussian":
            base = sq.sum() / (n2 * n2 - n2)
            return sum(np.exp(-sq[i, j] / (base * 2.0**e)) for e in range(-m + 2, 2))
        if kernel == "laplacian":
            return np.exp(-l1[i, j] / (l1.sum() / (n2 * n2 - n2)))
        if kernel == "linear":
            return float(z[i] @ z[j])
        return float(z[i] @ z[j] / np.linalg.norm(z[i]) / np.linalg.norm(z[j]))

    n = len(x)
    xs, ys = range(n), range(n, n2)
    kxx = np.mean([k(i, j) for i in xs for j in xs])
    kyy = np.mean([k(i, j) for i in ys for j in ys])
    kxy = np.mean([k(i, j) for i in xs for j in ys])
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "linear", "cosine"])
def test_mmd_matches_numpy_reference(kernel):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 2.0, size=(5, 3))
    got = mmd2(torch.tensor(x), torch.tensor(y), kernel).item()
    assert got == pytest.approx(np_mmd2(x, y, kernel), rel=1e-6, abs=1e-9)


def test_mmd_three_kernels_family():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    assert mmd2(torch.tensor(x), torch.tensor(y), "gaussian", m=3).item() == pytest.approx(np_mmd2(x, y, "gaussian", 3))


def test_mmd_zero_for_equal_and_positive_for_shifted():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(400, 8)))
    same = torch.tensor(rng.normal(size=(400, 8)))
    shifted = same + 1.5
    assert mmd2(x, x).item() == pytest.approx(0.0, abs=1e-9)
    assert mmd2(x, same).item() < 0.05
    assert mmd2(x, shifted).item() > 10 * mmd2(x, same).item()


def test_infonce_prefers_matched_pairs():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(16, 8)))
    cfg = TrainConfig(kernel="infonce", infonce_temperature=0.1)
    matched = alignment_loss(x, x + 0.01, cfg)
    shuffled = alignment_loss(x, x[torch.randperm(16)], cfg)
    assert matched < shuffled


def test_bce_loss_matches_formula():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    want = -np.mean(np.log(sig(pos.numpy()))) - np.mean(np.log(1 - sig(neg.numpy())))
    assert bce_loss(pos, neg).item() == pytest.approx(want, rel=1e-6)


def test_negatives_avoid_the_users_items():
    user_items = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 0, 0, 0]])
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(user_items, 7, (2, 50), gen)
    assert neg.min() >= 1 and neg.max() <= 7
    assert not np.isin(neg[0].numpy(), [1, 2, 3, 4]).any()
    assert not np.isin(neg[1].numpy(), [5, 6]).any()
    assert set(neg[0].tolist()) == {5, 6, 7}
