"""Full-ranking evaluation: HR@k and nDCG@k over the whole item set, in percent."""

from __future__ import annotations

import numpy as np
import torch

from padcore.dataset import GROUPS, Dataset

UNREACHABLE = 2**62  # the rank of a target that is in the user's history (excluded from ranking)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items, ties counted in the target's favour.

    Padding (column 0) and the user's history items are excluded from the ranking;
    a target that is itself in the history can never be hit (rank = UNREACHABLE).
    """
    scores = scores.float()
    t = scores.gather(1, targets[:, None])
    # count every item above the target, then take back padding and each distinct history item above it
    hist = history.sort(1).values
    distinct = hist > 0
    distinct[:, 1:] &= hist[:, 1:] != hist[:, :-1]
    ranks = _count_above(scores, t) - (scores[:, :1] > t).squeeze(1).long()
    ranks -= ((scores.gather(1, hist) > t) & distinct).sum(1)
    ranks[((hist == targets[:, None]) & distinct).any(1)] = UNREACHABLE
    return ranks


def linear_target_ranks(users: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, history: torch.Tensor,
                        block: int) -> torch.Tensor:
    """`target_ranks` of the scores `users @ table.T`, computed `block` items at a time.

    A block of scores stays in the CPU's cache while it is counted, so the [B, N+1] matrix
    is never written to memory (several times faster at large catalogues). Each target's
    score is first guessed from the first block's product, where the targets' own rows
    are appended; if a target's score in its own block differs from the guess (another
    product of the same pair may round differently), the blocks are counted again against
    that score, so every comparison is between values of one computation and ties keep
    `target_ranks`' rule exactly.
    """
    n = table.shape[0]
    if n <= block:
        return target_ranks(users @ table.T, targets, history)
    hist = history.sort(1).values
    distinct = hist > 0
    distinct[:, 1:] &= hist[:, 1:] != hist[:, :-1]
    t = None
    for _ in range(2):
        ranks = torch.zeros(len(targets), dtype=torch.long, device=users.device)
        own = torch.empty(len(targets), device=users.device)
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            if lo == 0:
                scores = (users @ torch.cat([table[:hi], table[targets]]).T).float()
                t = scores[:, hi:].diagonal().clone()[:, None] if t is None else t
                scores = scores[:, :hi]
                ranks -= (scores[:, :1] > t).squeeze(1).long()  # padding
            else:
                scores = (users @ table[lo:hi].T).float()
            rows = ((targets >= lo) & (targets < hi)).nonzero().squeeze(1)
            own[rows] = scores[rows, targets[rows] - lo]
            ranks += _count_above(scores, t)
            inside = distinct & (hist >= lo) & (hist < hi)
            ranks -= ((scores.gather(1, (hist - lo).clamp(0, hi - lo - 1)) > t) & inside).sum(1)
        if torch.equal(own[:, None], t):
            break
        t = own[:, None]
    ranks[((hist == targets[:, None]) & distinct).any(1)] = UNREACHABLE
    return ranks


def top_k(scores: torch.Tensor, history: torch.Tensor, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best items per row as (item_idx [B, k], score [B, k]), best first; the rule of `target_ranks`.

    Padding (item 0) and the row's history items are excluded, as in evaluation; ties are
    broken by the lower item_idx, so the order is exact and the same on every call. A slot
    with no item left to recommend (k larger than the candidates) holds item 0 and score -inf.
    `offset`: the item_idx of column 0, when `scores` are a block of the catalogue's columns.
    The k-th best allowed score is found among the row's k + S + 1 best (at most S + 1 of them
    are excluded); every allowed item at or above it is then ordered exactly, so the whole
    catalogue is passed over twice and nothing of its size is copied.
    """
    scores = scores.float()
    rows, n = scores.shape
    banned = torch.cat([history, history.new_zeros(rows, 1)], 1) - offset  # history and padding, as columns
    best_values, best_cols = scores.topk(min(k + banned.shape[1], n), dim=1)
    allowed = ~(best_cols[:, :, None] == banned[:, None, :]).any(2)
    seen = allowed.cumsum(1)
    kth = best_values.gather(1, (seen < k).sum(1, keepdim=True).clamp(max=best_values.shape[1] - 1))
    kth[seen[:, -1] < k] = float("-inf")  # fewer than k allowed items in the whole row
    row, col = (scores >= kth).nonzero(as_tuple=True)  # row-major: item_idx ascending per row
    allowed = ~(banned[row] == col[:, None]).any(1)
    row, col = row[allowed], col[allowed]
    value = scores[row, col]
    order = torch.sort(value, descending=True, stable=True).indices  # ties keep item_idx ascending
    order = order[torch.sort(row[order], stable=True).indices]  # then by row, keeping that order
    row, col, value = row[order], col[order], value[order]
    slot = torch.arange(len(row), device=row.device) - torch.searchsorted(row, row, right=False)
    keep = slot < k
    items = torch.zeros(rows, k, dtype=torch.long, device=scores.device)
    values = torch.full((rows, k), float("-inf"), device=scores.device)
    items[row[keep], slot[keep]] = col[keep] + offset
    values[row[keep], slot[keep]] = value[keep]
    return items, values


def linear_top_k(users: torch.Tensor, table: torch.Tensor, history: torch.Tensor, k: int,
                 block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`top_k` of the scores `users @ table.T`, computed `block` items at a time.

    Each block's own k best (the same total order: score, then lower item_idx) hold the
    catalogue's k best, so merging them gives `top_k`'s lists exactly.
    """
    n = table.shape[0]
    if n <= block:
        return top_k(users @ table.T, history, k)
    parts = [top_k(users @ table[lo : lo + block].T, history, k, lo) for lo in range(0, n, block)]
    items, values = torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
    order = torch.sort(torch.where(items > 0, items, n), dim=1, stable=True).indices  # item_idx ascending, empty last
    items, values = items.gather(1, order), values.gather(1, order)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]  # then score descending
    return items.gather(1, order), values.gather(1, order)


def _count_above(scores: torch.Tensor, t: torch.Tensor, block: int = 2**15 - 1) -> torch.Tensor:
    """Per row, how many scores exceed t; int16 sums over column blocks (bool sums are 5-8x slower on CPUs)."""
    total = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    for lo in range(0, scores.shape[1], block):
        total += (scores[:, lo : lo + block] > t).to(torch.int16).sum(1, dtype=torch.int16)
    return total


def hit_ndcg(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user hit (0/1) and nDCG@k (1/log2(rank + 2) when rank < k) from 0-based ranks."""
    hit = (ranks < k).astype(np.float64)
    return hit, hit / np.log2(np.minimum(ranks, k) + 2.0)


def full_ranking_metrics(ranks: np.ndarray, targets: np.ndarray, ds: Dataset, k: int = 10) -> dict:
    """HR@k / nDCG@k (percent) overall, per warm/median/cold group and per frequency bucket."""
    hit, ndcg = hit_ndcg(ranks, k)
    hk, nk = f"hr@{k}", f"ndcg@{k}"

    def cell(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        return {
            hk: float(100 * hit[mask].mean()) if n else 0.0,
            nk: float(100 * ndcg[mask].mean()) if n else 0.0,
            "users": n,
        }

    group = ds.item_column("group")[targets]
    bucket = ds.item_column("bucket")[targets]
    n_buckets = ds.meta["protocol"]["buckets"]
    everyone = np.ones(len(ranks), dtype=bool)
    return {
        **cell(everyone),
        # targets already in the user's history are excluded from the ranking, so never hits
        "repeat_targets": int((ranks == UNREACHABLE).sum()),
        "groups": {g: cell(group == g) for g in GROUPS},
        "buckets": [{"bucket": b, **cell(bucket == b)} for b in range(1, n_buckets + 1)],
    }
