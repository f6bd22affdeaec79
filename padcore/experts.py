"""Item towers, experts, fusions and the model around them.

An expert = an item tower (item_idx -> representation) + a backbone. The same
tower embeds the input sequence and the candidate items, and a logit is the dot
product of a backbone state with a candidate's representation.

- `IdTower`: an ID embedding table.
- `TextTower`: an MLP over the frozen text table (one `TextTable` shared by every tower of a model).
- `FusedTower`: ID table + MLP(text), summed (the alignment expert, eq. 9).
- `SimilarityTower`: the frozen text itself, unit-normalised (the text-similarity expert:
  no parameters; with `RecencyPool` an item scores its text's cosine similarity to the
  user's recent items).
- `MetricTower`: the same under a learned low-rank metric, text (I + U V^T), unit-normalised
  and scaled (the tuned-similarity expert: it starts as the similarity expert, V = 0).

`PadModel` holds one expert, or several whose logits a fusion combines per
candidate item (padcore/fusion.py).
"""

from __future__ import annotations

import torch
from torch import nn

from padcore.backbones import RecencyPool, make_backbone
from padcore.config import TrainConfig


class TextTable(nn.Module):
    """The frozen text table [N+1, D]: one buffer for all text towers of a model, kept in its stored precision.

    Never a weight (stop-gradient), never saved with the model; rows are cast to float32 as they are read.
    """

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table, persistent=False)

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def __len__(self) -> int:
        return self.table.shape[0]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx].float()


TABLE_CHUNK = 2**14  # items per call when a tower computes its whole table (bounded memory at any catalogue)


class ItemTower(nn.Module):
    """An item tower: `forward(idx)` -> representations; `table()` = every item's, computed in chunks."""

    rows: int  # n_items + 1

    def device(self) -> torch.device:
        return next(self.parameters()).device

    def table(self) -> torch.Tensor:
        idx = torch.arange(self.rows, device=self.device())
        return torch.cat([self.forward(chunk) for chunk in idx.split(TABLE_CHUNK)])


class IdTower(ItemTower):
    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.rows = n_items + 1
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.emb(idx)

    def table(self) -> torch.Tensor:
        return self.emb.weight


class TextTower(ItemTower):
    """MLP over the frozen text table; the text never receives gradients (stop-gradient)."""

    def __init__(self, text: TextTable, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.rows = len(text)
        self.text = text  # shared: registered in every tower, moved and held once
        self.mlp = nn.Sequential(nn.Linear(text.dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        items, where = idx.unique(return_inverse=True)
        # once per distinct item (batches repeat popular items), so an item has one dropout mask per call
        out = self.norm(self.mlp(self.text(items)))[where]
        return out * (idx > 0).unsqueeze(-1)


class FusedTower(ItemTower):
    """The alignment expert's items: its own ID table plus its reduced text."""

    def __init__(self, ids: IdTower, text: TextTower):
        super().__init__()
        self.rows = ids.rows
        self.ids, self.text = ids, text

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.ids(idx) + self.text(idx)

    def table(self) -> torch.Tensor:
        return self.ids.table() + self.text.table()


class SimilarityTower(ItemTower):
    """The frozen text, each row scaled to unit length; no parameters (padding stays 0)."""

    def __init__(self, text: TextTable):
        super().__init__()
        self.rows = len(text)
        self.text = text

    def device(self) -> torch.device:
        return self.text.table.device

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        v = self.text(idx)
        return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class MetricTower(SimilarityTower):
    """An item is sqrt(scale) * unit(t + (t U) V^T), t its frozen text: with `RecencyPool` a logit is
    scale x the cosine of the item to the user's recent items under the learned metric (I + U V^T).

    V starts at 0, so the untrained expert ranks exactly as the similarity expert does; the scale
    (a logit needs a range a cosine lacks) starts at `START_SCALE`.
    """

    START_SCALE = 20.0

    def __init__(self, text: TextTable, rank: int):
        super().__init__(text)
        self.u = nn.Parameter(torch.randn(text.dim, rank) * text.dim**-0.5)
        self.v = nn.Parameter(torch.zeros(text.dim, rank))
        self.log_scale = nn.Parameter(torch.tensor(self.START_SCALE).log())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = self.text(idx)
        x = t + (t @ self.u) @ self.v.T
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * (self.log_scale / 2).exp()


class Expert(nn.Module):
    def __init__(self, tower: nn.Module, backbone: nn.Module):
        super().__init__()
        self.tower, self.backbone = tower, backbone

    def states(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded item_idx -> [B, L, d] states."""
        return self.backbone(self.tower(seq), seq > 0)


# each expert's item representations; the fusion's per-item part and (every item) its folded table, or None
Side = tuple[list[torch.Tensor], "tuple[object, torch.Tensor | None] | None"]


class PadModel(nn.Module):
    """One expert, or several whose logits `fusion` combines per candidate item.

    `aux` holds modules a training loss needs but scoring does not (projection
    heads, estimators); they are trained and saved with the model.
    """

    def __init__(self, experts: dict[str, Expert], fusion: nn.Module | None = None,
                 aux: dict[str, nn.Module] | None = None):
        super().__init__()
        if len(experts) > 1 and fusion is None:
            raise ValueError("several experts need a fusion")
        self.experts = nn.ModuleDict(experts)
        self.fusion = fusion
        self.aux = nn.ModuleDict(aux or {})

    def states(self, seq: torch.Tensor) -> list[torch.Tensor]:
        return [e.states(seq) for e in self.experts.values()]

    def states_from(self, seq: torch.Tensor, tables: list[torch.Tensor]) -> list[torch.Tensor]:
        """`states` with the inputs embedded from precomputed item tables (evaluation: no tower runs again)."""
        return [e.backbone(t[seq], seq > 0) for e, t in zip(self.experts.values(), tables)]

    def item_side(self, items: torch.Tensor | None = None, tables: list[torch.Tensor] | None = None) -> Side:
        """Each expert's representations of `items` (every item when None), and the fusion's per-item part.

        For every item, a fusion whose logit is linear in the experts' logits also folds
        the weighted tables into one, so a fused score is one matrix product. `tables`:
        the experts' representations of `items` (of every item when None), already computed
        (frozen experts: only the fusion changes).
        """
        if tables is not None:
            reps = tables
        elif items is None:
            reps = [e.tower.table() for e in self.experts.values()]
        else:
            reps = [e.tower(items) for e in self.experts.values()]
        if self.fusion is None:
            return reps, None
        part = self.fusion.item_part(items, reps)
        fold = getattr(self.fusion, "fold", None)
        return reps, (part, fold(reps, part) if items is None and fold is not None else None)

    def logits(self, states: list[torch.Tensor], items: torch.Tensor | None = None, side: Side | None = None
               ) -> torch.Tensor:
        """Logits of states [P, d] against candidates.

        items: None = every item -> [P, N+1]; [K] = candidates shared by all rows -> [P, K];
        [P, K] = candidates per row -> [P, K]. `side` = a precomputed `item_side(items)`.
        """
        reps, fused = side if side is not None else self.item_side(items)
        if fused is not None and fused[1] is not None:
            return torch.cat(states, -1) @ fused[1].T
        if reps[0].dim() == 2:
            scores = [s @ r.T for s, r in zip(states, reps)]
        else:
            scores = [torch.einsum("pd,pkd->pk", s, r) for s, r in zip(states, reps)]
        if self.fusion is None:
            return scores[0]
        return self.fusion(scores, fused[0], all_items=items is None)

    def ranking_table(self, side: Side) -> torch.Tensor | None:
        """[N+1, D] table T with scores(seq) = user_vectors(seq) @ T.T, or None when the fusion is not linear."""
        reps, fused = side
        if fused is None:
            return reps[0] if len(reps) == 1 else None
        return fused[1]

    def user_vectors(self, seq: torch.Tensor, side: Side) -> torch.Tensor:
        """[B, D] each sequence's last states side by side: its scores are these times `ranking_table(side)`."""
        states = self.states(seq) if self.training else self.states_from(seq, side[0])
        return torch.cat([s[:, -1] for s in states], -1)

    def scores(self, seq: torch.Tensor, side: Side | None = None) -> torch.Tensor:
        """[B, N+1] score of every item as the next one after each left-padded sequence `seq` [B, L].

        Column 0 is padding. Evaluation, recommendation and serving all rank with this;
        `side` = a precomputed `item_side()` (the same for every batch of users).
        """
        side = side if side is not None else self.item_side()
        states = self.states(seq) if self.training else self.states_from(seq, side[0])
        return self.logits([s[:, -1] for s in states], side=side)

    def expert_weights(self) -> torch.Tensor:
        """[N+1, n_experts] weight of each expert per item (one column of ones for a single expert)."""
        reps, fused = self.item_side()
        if self.fusion is None:
            return torch.ones(reps[0].shape[0], 1, device=reps[0].device)
        return self.fusion.item_weights(fused[0], reps[0].shape[0])


def build_expert(kind: str, cfg: TrainConfig, n_items: int, max_len: int, text: TextTable | None) -> Expert:
    """A fresh PAD expert of `kind`: id (ID table), align (ID table + reduced text), llm (reduced text),
    sim (the text's cosine similarity to the recent items; nothing to train) or tuned (the same under a
    learned metric)."""
    if kind == "sim":
        return Expert(SimilarityTower(text), RecencyPool(cfg.sim_decay))
    if kind == "tuned":
        return Expert(MetricTower(text, cfg.tuned_rank), RecencyPool(cfg.sim_decay))
    if kind == "id":
        tower: nn.Module = IdTower(n_items, cfg.dim)
    elif kind == "llm":
        tower = TextTower(text, cfg.dim, cfg.text_hidden, cfg.dropout)
    elif kind == "align":
        tower = FusedTower(IdTower(n_items, cfg.dim), TextTower(text, cfg.dim, cfg.text_hidden, cfg.dropout))
    else:
        raise ValueError(f"unknown expert kind {kind!r}; known: id, align, llm, sim, tuned")
    return Expert(tower, make_backbone(cfg, max_len))
