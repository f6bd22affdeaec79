"""LLM-ESR (Liu et al., NeurIPS '24): dual-view modelling and retrieval-augmented self-distillation.

Two views of an item: semantic, an adapter (Linear D -> D/2 -> d, no activation)
over the frozen text vector; collaborative, an ID table started from the PCA of
the text table to d dimensions. Each view crosses the other by a causal
cross-attention (its query from one view, keys and values from the other), then
one shared backbone encodes each; the score is the sum of the two views' dot
products. Self-distillation pulls a user's last state (both views) towards the
mean, held fixed, of the last states of the `neighbours` users whose training
items' texts are most alike (cosine of the mean text vector of each user's
training items), weight `alpha`; the neighbours' states are refreshed once per
epoch.

Differences from the released code, where it must: neighbours come from each
user's mean text vector rather than an LLM embedding of a prompt of titles
(pad embeds items, not users); the cross-attention and the backbone are causal
(the released SASRec and cross-attention masks let a position see its own label);
lengths follow pad's protocol (20 inputs, not 200); the teacher states are
computed once per epoch (every user's, before its first batch) instead of by a
forward pass over ten neighbours in every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from padcore.backbones import make_backbone
from padcore.batches import SplitTensors
from padcore.experts import Expert, IdTower, ItemTower, PadModel, TextTable
from padcore.fusion import SumFusion
from padcore.models.spec import ModelSpec, Stage, StageContext, register
from padcore.options import option


@dataclass
class LlmEsrOptions:
    alpha: float = option(0.1, "weight of the self-distillation loss", low=0)
    neighbours: int = option(10, "similar users whose mean state a user is distilled towards", low=1)
    cross_attention: bool = option(True, "each view attends to the other before the backbone")


class AdapterTower(ItemTower):
    """The semantic view: Linear(D -> D/2) -> Linear(D/2 -> d) over the frozen text vector."""

    def __init__(self, text: TextTable, dim: int):
        super().__init__()
        self.rows = len(text)
        self.text = text
        self.adapter = nn.Sequential(nn.Linear(text.dim, text.dim // 2), nn.Linear(text.dim // 2, dim))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.text(idx)) * (idx > 0).unsqueeze(-1)


class CausalCrossAttention(nn.Module):
    """Queries from one view, keys and values from the other, position t seeing positions <= t."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, query: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = query.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=query.device).tril()
        # allowed: earlier real keys, and always the position itself (a padding row never sees nothing)
        allowed = (causal & mask[:, None, :]) | torch.eye(L, dtype=torch.bool, device=query.device)
        blocked = (~allowed).repeat_interleave(self.attn.num_heads, 0)
        out, _ = self.attn(query, other, other, attn_mask=blocked, need_weights=False)
        return out * mask.unsqueeze(-1)


class DualViewModel(PadModel):
    """Two views ("id", "sem") sharing one backbone, crossed before it; their logits are summed."""

    def __init__(self, ids: IdTower, sem: AdapterTower, backbone: nn.Module, cross: bool, heads: int, dim: int):
        super().__init__({"id": Expert(ids, backbone), "sem": Expert(sem, backbone)}, SumFusion(2))
        self.cross = nn.ModuleList(CausalCrossAttention(dim, heads) for _ in range(2)) if cross else None

    def states(self, seq: torch.Tensor) -> list[torch.Tensor]:
        return self._encode(seq, self.experts["id"].tower(seq), self.experts["sem"].tower(seq))

    def states_from(self, seq: torch.Tensor, tables: list[torch.Tensor]) -> list[torch.Tensor]:
        return self._encode(seq, tables[0][seq], tables[1][seq])

    def _encode(self, seq: torch.Tensor, co: torch.Tensor, se: torch.Tensor) -> list[torch.Tensor]:
        mask = seq > 0
        if self.cross is not None:
            co, se = self.cross[0](se, co, mask), self.cross[1](co, se, mask)
        backbone = self.experts["id"].backbone
        return [backbone(co, mask), backbone(se, mask)]


def build_llmesr(ctx: StageContext) -> PadModel:
    cfg = ctx.cfg
    heads = 2 if cfg.dim % 2 == 0 else 1  # LLM-ESR's cross-attention has 2 heads
    return DualViewModel(IdTower(ctx.shape.n_items, cfg.dim), AdapterTower(ctx.text, cfg.dim),
                         make_backbone(cfg, ctx.shape.max_len), ctx.options.cross_attention, heads, cfg.dim)


@torch.no_grad()
def text_pca(table: torch.Tensor, dim: int) -> torch.Tensor:
    """[N+1, dim]: the real rows of a text table projected on their top `dim` principal axes (row 0 stays 0)."""
    x = table[1:].float()
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    out = torch.zeros(table.shape[0], dim)
    k = min(dim, v.shape[0])
    out[1:, :k] = x @ v[:k].T
    return out * (dim**-0.5 / out[1:].std().clamp(min=1e-8))  # the scale of a fresh ID table


def init_llmesr(model: PadModel, ctx: StageContext) -> None:
    with torch.no_grad():
        model.experts["id"].tower.emb.weight.copy_(text_pca(ctx.text.table, ctx.cfg.dim))


@torch.no_grad()
def similar_users(data: SplitTensors, text: TextTable, k: int, chunk: int = 2048) -> torch.Tensor:
    """[U, k]: per user, the k other users whose training items have the most alike mean text vector."""
    items = data.train
    vec = torch.zeros(len(items), text.dim)
    for lo in range(0, len(items), chunk):
        rows = items[lo:lo + chunk]
        vec[lo:lo + chunk] = (text(rows) * (rows > 0).unsqueeze(-1)).sum(1) / (rows > 0).sum(1, keepdim=True).clamp(min=1)
    vec = F.normalize(vec, dim=1)
    out = torch.empty(len(items), k, dtype=torch.long)
    for lo in range(0, len(items), chunk):
        sim = vec[lo:lo + chunk] @ vec.T
        sim[torch.arange(len(sim)), torch.arange(lo, lo + len(sim))] = float("-inf")  # never oneself
        out[lo:lo + chunk] = sim.topk(k, 1).indices
    return out


class Distillation:
    """alpha * MSE between a user's last state (both views) and the mean last state of its neighbours.

    The teacher states are every user's last state under the model as it stood at the
    start of the epoch (evaluation mode, no gradient), computed once per epoch: the
    released code runs the model over the neighbours of every batch (ten times the
    batch, each step) and so reads a teacher at most one epoch fresher.
    """

    def __init__(self, ctx: StageContext, chunk: int = 1024):
        opts = ctx.options
        self.train, self.alpha, self.chunk = ctx.data.train, opts.alpha, chunk
        self.neighbours = similar_users(ctx.data, ctx.text, min(opts.neighbours, len(self.train) - 1))
        self.teacher: torch.Tensor | None = None

    @staticmethod
    def last_state(model: PadModel, rows: torch.Tensor) -> torch.Tensor:
        """[B, 2d]: both views' states after the items before each row's last training target."""
        seq = rows[:, :-1]  # a training input: the items before the user's last training target
        seq = seq[:, -max(int((seq > 0).sum(1).max()), 1):]  # left padding: no output changes
        return torch.cat([s[:, -1] for s in model.states(seq)], -1)

    @torch.no_grad()
    def start_epoch(self, model: PadModel, device: torch.device) -> None:
        was = model.training
        model.eval()
        self.teacher = torch.cat([self.last_state(model, self.train[lo:lo + self.chunk].to(device))
                                  for lo in range(0, len(self.train), self.chunk)])
        model.train(was)

    def __call__(self, model: PadModel, rows: torch.Tensor, batch: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
        own = self.last_state(model, self.train[rows].to(batch.device))
        teacher = self.teacher[self.neighbours[rows].to(batch.device)].mean(1)
        return self.alpha * F.mse_loss(own, teacher)


register(ModelSpec(
    name="llmesr", title="LLM-ESR", summary="semantic and collaborative views, one backbone, self-distillation from "
    "similar users", options=LlmEsrOptions,
    stages=(Stage("llmesr", build_llmesr, init=init_llmesr, defaults={"lr": 5e-3}, extra=Distillation),),
))
