"""Recommendation losses (L_REC) and alignment losses (MK-MMD and the ablation kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from padcore.errors import PadError
from padcore.registry import ALIGN_LOSSES, REC_LOSSES

# ---------------------------------------------------------------- L_REC


def sample_negatives(
    user_items: torch.Tensor, n_items: int, shape: tuple[int, ...], gen: torch.Generator
) -> torch.Tensor:
    """Uniform item_idx in 1..n_items per row of `user_items` [B, S], never one of that row's items.

    `shape` is (B, ...) ; collisions are redrawn (vectorised) until none is left.
    """
    neg = torch.randint(1, n_items + 1, shape, generator=gen, device=user_items.device)
    flat = neg.view(shape[0], -1)
    for _ in range(100):
        hit = (flat.unsqueeze(-1) == user_items.unsqueeze(1)).any(-1)
        if not hit.any():
            break
        flat[hit] = torch.randint(1, n_items + 1, (int(hit.sum()),), generator=gen, device=user_items.device)
    return neg


def bce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The paper's L_REC: BCE on a positive and a sampled negative logit per position."""
    return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
        neg, torch.zeros_like(neg)
    )


def softmax_loss(logits: torch.Tensor, target_col: torch.Tensor, invalid: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of logits [P, K] with the target at column `target_col` [P]; `invalid` [P, K] masked out."""
    if invalid is not None:
        logits = logits.masked_fill(invalid, float("-inf"))
    return F.cross_entropy(logits, target_col)


@dataclass
class Targets:
    """The next-item positions of a batch that L_REC scores."""

    items: torch.Tensor  # [P] target item_idx of each position
    keep: torch.Tensor  # [B, L] where in the batch the positions are
    user_items: torch.Tensor  # [B, S] every item of each row's user: never a negative
    n_items: int


# score(candidates): candidates None = every item -> [P, N+1]; [K] shared -> [P, K]; [P, K] per row -> [P, K]
Scorer = Callable[[torch.Tensor | None], torch.Tensor]


@REC_LOSSES.register("bce")
def bce_rec(score: Scorer, t: Targets, cfg, gen: torch.Generator) -> torch.Tensor:
    """The paper's: BCE on each position's target and one negative the user never touched."""
    neg = sample_negatives(t.user_items, t.n_items, tuple(t.keep.shape), gen)[t.keep]
    logits = score(torch.stack([t.items, neg], -1))
    return bce_loss(logits[:, 0], logits[:, 1])


@REC_LOSSES.register("ce")
def ce_rec(score: Scorer, t: Targets, cfg, gen: torch.Generator) -> torch.Tensor:
    """Full-softmax cross-entropy over every item."""
    logits = score(None)
    logits[:, 0] = float("-inf")
    return softmax_loss(logits, t.items)


@REC_LOSSES.register("sampled")
def sampled_rec(score: Scorer, t: Targets, cfg, gen: torch.Generator) -> torch.Tensor:
    """Softmax over the target and `sampled_negatives` items shared by the batch (accidental hits masked)."""
    neg = torch.randint(1, t.n_items + 1, (cfg.sampled_negatives,), generator=gen, device=t.items.device)
    logits = torch.cat([score(t.items[:, None]), score(neg)], 1)
    accidental = torch.cat([torch.zeros_like(t.items[:, None], dtype=torch.bool), neg[None, :] == t.items[:, None]], 1)
    return softmax_loss(logits, torch.zeros_like(t.items), accidental)


# ---------------------------------------------------------------- alignment


def _sq_dists(z: torch.Tensor) -> torch.Tensor:
    sq = (z * z).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp(min=0)


def kernel_matrix(z: torch.Tensor, kernel: str, m: int = 5) -> torch.Tensor:
    """Kernel matrix of the pooled sample z [2n, d].

    gaussian: sum of m kernels exp(-D / (2^k * mean D)), k = -m+2 .. 1 (k = -3..1 for m = 5),
    D = squared Euclidean distance, bandwidths from the sample (detached);
    laplacian: exp(-L1 / mean L1); linear: <x, y>; cosine: cosine similarity.
    """
    if kernel == "gaussian":
        d = _sq_dists(z)
        n = z.shape[0]
        base = d.detach().sum() / max(n * n - n, 1)
        # exp(-d / (2^k base)) for k = 1, 0, ..., -m+2: one exp at the widest bandwidth, then repeated squaring
        e = torch.exp(-d / (2 * base).clamp(min=1e-12))
        total = e
        for _ in range(m - 1):
            e = e * e
            total = total + e
        return total
    if kernel == "laplacian":
        d = torch.cdist(z, z, p=1)
        n = z.shape[0]
        return torch.exp(-d / (d.detach().sum() / max(n * n - n, 1)).clamp(min=1e-12))
    if kernel == "linear":
        return z @ z.T
    if kernel == "cosine":
        u = F.normalize(z, dim=1, eps=1e-8)
        return u @ u.T
    raise PadError(f"no kernel matrix for {kernel!r}; known: gaussian, laplacian, linear, cosine")


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: str = "gaussian", m: int = 5) -> torch.Tensor:
    """Biased MMD² estimate between samples x [n, d] and y [n', d] (eq. 5)."""
    k = kernel_matrix(torch.cat([x, y]), kernel, m)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def infonce(x: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE (eq. 16) with cosine similarity; x[i] and y[i] are the positive pair."""
    logits = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(x.shape[0], device=x.device))


def _mmd_loss(kernel: str, text: torch.Tensor, ids: torch.Tensor, cfg) -> torch.Tensor:
    return mmd2(text, ids, kernel, cfg.kernels)


for _kernel in ("gaussian", "laplacian", "linear", "cosine"):
    ALIGN_LOSSES.register(_kernel)(partial(_mmd_loss, _kernel))


@ALIGN_LOSSES.register("infonce")
def _infonce_loss(text: torch.Tensor, ids: torch.Tensor, cfg) -> torch.Tensor:
    return infonce(text, ids, cfg.infonce_temperature)


def alignment_loss(text: torch.Tensor, ids: torch.Tensor, cfg) -> torch.Tensor:
    """Alignment (cfg.kernel) between reduced text and collaborative embeddings of the same items, row i = item i."""
    return ALIGN_LOSSES[cfg.kernel](text, ids, cfg)
