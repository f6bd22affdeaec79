"""Fusions: how a model with several experts turns their logits into one score per candidate item.

Each fusion has two parts: `item_part(items, reps)` (what it computes once per
candidate item, e.g. gate weights; `items` None = every item) and
`forward(scores, part, all_items)` (the fused logits from the experts' logits).

- `FrequencyGate`: the paper's eq. 11 — an MLP on [bucket embedding, the item's
  representation in each expert] gives softmax weights over the experts; the logit
  is the weighted sum of the experts' raw logits.
- `BucketGate`: per frequency bucket, softmax weights over the experts, each expert's
  logits scaled by a learned temperature; with `raw=False` each expert's logits are
  first calibrated into log-probabilities over the whole catalogue (then it needs
  every item's logits). One bucket for every item = one weight vector (no gate).
- `SumFusion`: the plain sum of the experts' logits (no parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padcore.errors import PadError


def weighted_sum(scores: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """sum_e w[..., e] * scores[e]; w broadcasts against each score matrix."""
    return sum(w[..., e] * s for e, s in enumerate(scores))


def folded(reps: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """[N+1, sum of widths]: each expert's item table times its weight, side by side.

    A linear fusion's logit, sum_e w_e(i) <s_e, r_e(i)>, is then [s_1 | ... | s_k] @ folded.T:
    one matrix product instead of one per expert.
    """
    w = w.expand(reps[0].shape[0], -1)
    return torch.cat([w[:, e : e + 1] * r for e, r in enumerate(reps)], -1)


class FrequencyGate(nn.Module):
    """Eq. 11: per candidate item, a softmax over experts from its frequency bucket and expert embeddings."""

    def __init__(self, widths: list[int], dim: int, buckets: torch.Tensor, n_buckets: int):
        """widths: each expert's item-representation width; dim: the bucket embedding's and hidden width."""
        super().__init__()
        self.register_buffer("buckets", buckets.long())  # saved with the model: part of what it learned on
        self.bucket_emb = nn.Embedding(n_buckets + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(dim + sum(widths), dim), nn.GELU(), nn.Linear(dim, len(widths)))
        # start as an equal-weight fusion of the experts
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def item_part(self, items: torch.Tensor | None, reps: list[torch.Tensor]) -> torch.Tensor:
        idx = torch.arange(reps[0].shape[0], device=reps[0].device) if items is None else items
        return F.softmax(self.mlp(torch.cat([self.bucket_emb(self.buckets[idx])] + reps, -1)), -1)

    def forward(self, scores: list[torch.Tensor], w: torch.Tensor, all_items: bool) -> torch.Tensor:
        return weighted_sum(scores, w)

    def fold(self, reps: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        return folded(reps, w)

    def item_weights(self, w: torch.Tensor, n: int) -> torch.Tensor:
        return w


class BucketGate(nn.Module):
    """Per frequency bucket, softmax weights over the experts, on their logits at a learned temperature each.

    raw (default): score(u, i) = sum_e w_e(b(i)) * t_e * s_e(u, i). Phase 3 starts each t_e at 1 / spread_e,
    spread_e (a buffer) being the expert's logits' standard deviation over the catalogue, so that experts of
    any scale start alike, and an expert's share of an item's score is w_e t_e spread_e, normalised;
    calibrated (raw=False): sum_e w_e(b(i)) * (t_e s_e(u, i) - logsumexp_j t_e s_e(u, j)), j over every
    real item — each expert's log-probability of item i, so a weight picks an expert without rescaling
    its confidence. Starts as the equal-weight average at temperature 1.
    """

    def __init__(self, n_experts: int, buckets: torch.Tensor, n_buckets: int, raw: bool = True):
        super().__init__()
        self.register_buffer("buckets", buckets.long())
        self.logits = nn.Parameter(torch.zeros(n_buckets + 1, n_experts))
        self.log_temperature = nn.Parameter(torch.zeros(n_experts))
        self.register_buffer("spread", torch.ones(n_experts))
        self.raw = raw

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # an artifact saved before the spread existed scores its experts' logits as they are
        state_dict.setdefault(prefix + "spread", torch.ones_like(self.spread))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def restart(self) -> None:
        """Back to phase 3's start: equal weights in every bucket, each expert's logits at unit spread."""
        with torch.no_grad():
            self.logits.zero_()
            self.log_temperature.copy_(-self.spread.log())

    def scales(self) -> torch.Tensor:
        """[n_experts] what each expert's logits are multiplied by (before its bucket weight)."""
        return self.log_temperature.exp()

    def bucket_weights(self) -> torch.Tensor:
        """[n_buckets + 1, n_experts]: row b = the experts' softmax weights on items of bucket b."""
        return F.softmax(self.logits, -1)

    def item_part(self, items: torch.Tensor | None, reps: list[torch.Tensor]) -> torch.Tensor:
        idx = self.buckets if items is None else self.buckets[items]
        return self.bucket_weights()[idx]

    def forward(self, scores: list[torch.Tensor], w: torch.Tensor, all_items: bool) -> torch.Tensor:
        t = self.scales()
        if self.raw:
            return weighted_sum([t[e] * s for e, s in enumerate(scores)], w)
        if not all_items:
            raise PadError("a calibrated fusion scores the whole catalogue; train it with loss=ce")
        return weighted_sum([log_probabilities(t[e] * s) for e, s in enumerate(scores)], w)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor | None:
        """[..., n_experts] what multiplies each expert's logit in the fused score (weight x scale), given the
        weights `w` of `item_part`; None when calibrated (the score is not linear in the logits)."""
        return w * self.scales() if self.raw else None

    def fold(self, reps: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor | None:
        c = self.coefficients(w)
        return None if c is None else folded(reps, c)

    def item_weights(self, w: torch.Tensor, n: int) -> torch.Tensor:
        """Each expert's share of an item's fused score: its weight times its temperature times its logits'
        spread, normalised."""
        scaled = w * self.log_temperature.exp() * self.spread
        return scaled / scaled.sum(-1, keepdim=True)


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the real items of [P, N+1] logits (column 0 is padding and is left out)."""
    return logits - torch.logsumexp(logits[:, 1:], 1, keepdim=True)


class SumFusion(nn.Module):
    """The plain sum of the experts' logits."""

    def __init__(self, n_experts: int):
        super().__init__()
        self.n_experts = n_experts

    def item_part(self, items: torch.Tensor | None, reps: list[torch.Tensor]) -> None:
        return None

    def forward(self, scores: list[torch.Tensor], part: None, all_items: bool) -> torch.Tensor:
        return sum(scores)

    def fold(self, reps: list[torch.Tensor], part: None) -> torch.Tensor:
        return torch.cat(reps, -1)

    def item_weights(self, part: None, n: int) -> torch.Tensor:
        return torch.ones(n, self.n_experts)
