"""Item towers, experts, the frequency-aware gate and the PAD model around them.

An expert = an item tower (item_idx -> representation) + a backbone. The same
tower embeds the input sequence and the candidate items, and a logit is the dot
product of a backbone state with a candidate's representation.

- ID expert: an ID embedding table.
- Alignment expert: ID table + MLP(frozen text), summed (eq. 9).
- LLM expert: MLP(frozen text) only (eq. 10).

`PadModel` holds one expert (phases 1 and 2) or several fused per candidate item
by `FrequencyGate` (eq. 11).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padcore.backbones import make_backbone
from padcore.config import TrainConfig


class IdTower(nn.Module):
    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.emb(idx)

    def table(self) -> torch.Tensor:
        return self.emb.weight


class TextTower(nn.Module):
    """MLP over a frozen text table; the text never receives gradients (stop-gradient)."""

    def __init__(self, text: torch.Tensor, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("text", text.float(), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(text.shape[1], hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        items, where = idx.unique(return_inverse=True)
        # once per distinct item (batches repeat popular items), so an item has one dropout mask per call
        out = self.norm(self.mlp(self.text[items]))[where]
        return out * (idx > 0).unsqueeze(-1)

    def table(self) -> torch.Tensor:
        return self.forward(torch.arange(self.text.shape[0], device=self.text.device))


class FusedTower(nn.Module):
    """The alignment expert's items: its own ID table plus its reduced text."""

    def __init__(self, ids: IdTower, text: TextTower):
        super().__init__()
        self.ids, self.text = ids, text

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.ids(idx) + self.text(idx)

    def table(self) -> torch.Tensor:
        return self.ids.table() + self.text.table()


class Expert(nn.Module):
    def __init__(self, tower: nn.Module, backbone: nn.Module):
        super().__init__()
        self.tower, self.backbone = tower, backbone

    def states(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded item_idx -> [B, L, d] states."""
        return self.backbone(self.tower(seq), seq > 0)


class FrequencyGate(nn.Module):
    """Per candidate item, a softmax over experts from its frequency bucket and expert embeddings."""

    def __init__(self, n_experts: int, dim: int, buckets: torch.Tensor, n_buckets: int):
        super().__init__()
        self.register_buffer("buckets", buckets.long())  # saved with the model: part of what it learned on
        self.bucket_emb = nn.Embedding(n_buckets + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(dim * (n_experts + 1), dim), nn.GELU(), nn.Linear(dim, n_experts))
        # start as an equal-weight fusion of the experts; training moves away only where validation says so
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, idx: torch.Tensor, reps: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([self.bucket_emb(self.buckets[idx])] + reps, -1)
        return F.softmax(self.mlp(x), -1)


class PadModel(nn.Module):
    """One or more experts; with several, logits are fused per candidate item."""

    def __init__(self, experts: dict[str, Expert], gate: FrequencyGate | None = None):
        super().__init__()
        self.experts = nn.ModuleDict(experts)
        self.gate = gate
        # without the gate, several experts are fused by one learned weight vector (the ablation)
        self.mix = nn.Parameter(torch.zeros(len(experts))) if gate is None and len(experts) > 1 else None

    def states(self, seq: torch.Tensor) -> list[torch.Tensor]:
        return [e.states(seq) for e in self.experts.values()]

    def _weights(self, idx: torch.Tensor | None, reps: list[torch.Tensor]) -> torch.Tensor | None:
        if self.gate is not None:
            if idx is None:
                idx = torch.arange(reps[0].shape[0], device=reps[0].device)
            return self.gate(idx, reps)
        if self.mix is not None:
            return F.softmax(self.mix, 0)
        return None

    def item_side(self, items: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Each expert's representations of `items` (every item when None) and their fusion weights."""
        if items is None:
            reps = [e.tower.table() for e in self.experts.values()]
        else:
            reps = [e.tower(items) for e in self.experts.values()]
        return reps, self._weights(items, reps) if len(reps) > 1 else None

    def logits(
        self,
        states: list[torch.Tensor],
        items: torch.Tensor | None = None,
        side: tuple[list[torch.Tensor], torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Logits of states [P, d] against candidates.

        items: None = every item -> [P, N+1]; [K] = candidates shared by all rows -> [P, K];
        [P, K] = candidates per row -> [P, K]. `side` = a precomputed `item_side(items)`.
        """
        reps, w = side if side is not None else self.item_side(items)
        if reps[0].dim() == 2:
            scores = [s @ r.T for s, r in zip(states, reps)]
        else:
            scores = [torch.einsum("pd,pkd->pk", s, r) for s, r in zip(states, reps)]
        if w is None:
            return scores[0]
        return sum(w[..., i] * s for i, s in enumerate(scores))

    def scores(self, seq: torch.Tensor, side: tuple[list[torch.Tensor], torch.Tensor | None] | None = None) -> torch.Tensor:
        """[B, N+1] score of every item as the next one after each left-padded sequence `seq` [B, L].

        Column 0 is padding. Evaluation, recommendation and serving all rank with this;
        `side` = a precomputed `item_side()` (the same for every batch of users).
        """
        states = [s[:, -1] for s in self.states(seq)]
        return self.logits(states, side=side if side is not None else self.item_side())

    def gate_weights(self) -> torch.Tensor:
        """[N+1, n_experts] fusion weights per item (uniform rows when there is no gate)."""
        reps, w = self.item_side()
        n = reps[0].shape[0]
        if w is None:
            return torch.ones(n, 1, device=reps[0].device)
        return w if w.dim() == 2 else w.expand(n, -1)


def build_expert(kind: str, cfg: TrainConfig, n_items: int, max_len: int, text: torch.Tensor | None) -> Expert:
    """A fresh expert of `kind` (id | align | llm)."""
    if kind == "id":
        tower: nn.Module = IdTower(n_items, cfg.dim)
    elif kind == "llm":
        tower = TextTower(text, cfg.dim, cfg.text_hidden, cfg.dropout)
    else:
        tower = FusedTower(IdTower(n_items, cfg.dim), TextTower(text, cfg.dim, cfg.text_hidden, cfg.dropout))
    return Expert(tower, make_backbone(cfg, max_len))


def build_model(
    kinds: tuple[str, ...],
    cfg: TrainConfig,
    n_items: int,
    max_len: int,
    text: torch.Tensor | None = None,
    buckets: torch.Tensor | None = None,
    n_buckets: int = 10,
) -> PadModel:
    experts = {k: build_expert(k, cfg, n_items, max_len, text) for k in kinds}
    gate = None
    if len(kinds) > 1 and cfg.gate:
        gate = FrequencyGate(len(kinds), cfg.dim, buckets, n_buckets)
    return PadModel(experts, gate)
