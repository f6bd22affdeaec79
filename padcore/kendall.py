"""Kendall's-tau discrepancy between two embedding spaces (paper Sec. 4.3, eq. 13).

For every (behaviour item, target item) pair of the test sequences, the
Euclidean distance under table A and under table B; Kendall's tau between the
two distance lists says how much of the distance order B keeps from A. Only
distances are compared, so A and B may have different widths.

The variant is tau-b (`scipy.stats.kendalltau`'s default, O(n log n)): eq. 13
corrected for ties, which equals eq. 13 when no two distances tie. Above
`max_pairs` pairs tau is computed on a seeded uniform subsample of `max_pairs`
pairs; the subsample depends only on (n, seed), so every comparison over the
same pairs uses the same subsample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from padcore.batches import window
from padcore.dataset import Dataset

MAX_PAIRS = 2_000_000  # above this many pairs, tau is computed on a seeded subsample of this size
MIN_PAIRS = 100  # fewer pairs than this: tau's standard error (~0.67/sqrt(n)) is too large to report
CHUNK_VALUES = 1 << 24  # float64 values per distance chunk (128 MiB), so 4096-wide text tables fit


@dataclass
class Pairs:
    """Behaviour-target pairs, each with the target's frequency bucket (1 = warmest)."""

    behaviour: np.ndarray  # int64 item_idx
    target: np.ndarray  # int64 item_idx
    bucket: np.ndarray  # int64, the target item's bucket
    self_pairs: int = 0  # pairs left out because the behaviour item is the target item

    def __len__(self) -> int:
        return len(self.target)


def behaviour_target_pairs(ds: Dataset, max_len: int | None = None) -> Pairs:
    """Every (input item, test target) pair: the same input window as evaluation.

    A user's test target is its last item; its inputs are the latest `max_len`
    items before it (default: the dataset protocol's max_len). Pairs of an item
    with itself are left out: their distance is 0 in every table, so they would
    count as agreement between any two spaces.
    """
    max_len = max_len or ds.meta["protocol"]["max_len"]
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    inputs = window(ds.flat, starts, ends - 1, max_len)  # [U, L], 0 = padding
    targets = np.broadcast_to(ds.flat[ends - 1].astype(np.int64)[:, None], inputs.shape)
    same = inputs == targets
    keep = (inputs > 0) & ~same
    target = targets[keep]
    return Pairs(inputs[keep], target, ds.item_column("bucket").astype(np.int64)[target], int(same.sum()))


def pair_distances(table: np.ndarray, behaviour: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean distance between table[behaviour[k]] and table[target[k]] (float64), in chunks."""
    table = np.asarray(table)
    out = np.empty(len(target), dtype=np.float64)
    step = max(1, CHUNK_VALUES // max(table.shape[1], 1))
    for lo in range(0, len(target), step):
        hi = lo + step
        diff = table[behaviour[lo:hi]].astype(np.float64) - table[target[lo:hi]].astype(np.float64)
        out[lo:hi] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


@dataclass
class Tau:
    tau: float | None  # None when undefined (too few pairs, or one list constant)
    pairs: int  # pairs available
    used: int  # pairs tau was computed on (< pairs when subsampled)
    status: str  # "ok" | "too few pairs" | "undefined: constant distances"

    def to_dict(self) -> dict:
        return {"tau": self.tau, "pairs": self.pairs, "used": self.used, "status": self.status}


def kendall_tau(
    x: np.ndarray, y: np.ndarray, *, min_pairs: int = MIN_PAIRS, max_pairs: int = MAX_PAIRS, seed: int = 0
) -> Tau:
    """Kendall's tau-b between two paired lists, subsampled (seeded) above `max_pairs`."""
    n = len(x)
    if n < max(min_pairs, 2):
        return Tau(None, n, 0, "too few pairs")
    if n > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(n, size=max_pairs, replace=False))
        x, y = x[pick], y[pick]
    tau = stats.kendalltau(x, y).statistic
    if not np.isfinite(tau):
        return Tau(None, n, len(x), "undefined: constant distances")
    return Tau(float(tau), n, len(x), "ok")


def tau_by_bucket(
    dist_a: np.ndarray,
    dist_b: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    *,
    min_pairs: int = MIN_PAIRS,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> dict:
    """Tau over all pairs and per target bucket 1..n_buckets; every bucket is reported, empty or not."""
    opts = dict(min_pairs=min_pairs, max_pairs=max_pairs, seed=seed)
    buckets = []
    for b in range(1, n_buckets + 1):
        sel = bucket == b
        buckets.append({"bucket": b, **kendall_tau(dist_a[sel], dist_b[sel], **opts).to_dict()})
    return {"overall": kendall_tau(dist_a, dist_b, **opts).to_dict(), "buckets": buckets}
