"""DisCo (Du et al., KDD '24): ID and text embeddings split into chunks, kept apart and kept useful.

An item is W · Dropout([c1 ; c2 ; t1 ; t2]) of four chunks: two ID chunks (two
tables, both started from the phase-1 ID table) and two text chunks (two text
MLPs). The item vector is also the output embedding the scores are taken against,
hence linear in the chunks: with a Linear + GELU head per chunk and a GELU after
the projection (an earlier version's) validation turned down after epoch 8 and
DisCo stayed below SASRec (bench/RESULTS.md, "baselines below SASRec"). Besides
L_REC, two regularisers:
- disentanglement: a CLUB upper bound of the mutual information between the ID and
  the text chunk of each pair (c1, t1) and (c2, t2), over the batch's distinct
  items; the CLUB estimators q(t | c) = N(mu(c), exp(logvar(c))) learn by maximum
  likelihood on detached chunks in the same step (DisCo updates them with an
  optimiser of their own);
- sufficiency: for each chunk kind a bilinear discriminator must tell the next item
  from a sampled negative given the mean of that chunk over the items before it.
Weights `alpha` and `beta` (DisCo's 0.2). DisCo's target-aware attention over the
history and its rating (label) vectors cannot score a whole catalogue by a dot
product, and need explicit ratings; as in the PAD paper's code the chunks are
per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from padcore.backbones import make_backbone
from padcore.experts import Expert, IdTower, ItemTower, PadModel, TextTower
from padcore.losses import sample_negatives
from padcore.models.idonly import PRETRAIN
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.options import option
from padcore.trainer import ExtraLoss

CHUNKS = ("c1", "c2", "t1", "t2")


@dataclass
class DiscoOptions:
    alpha: float = option(0.2, "weight of the disentanglement (CLUB) loss", low=0)
    beta: float = option(0.2, "weight of the sufficiency loss", low=0)


class ChunkTower(ItemTower):
    """Four chunks (two ID, two text) side by side -> Dropout -> Linear(4d -> d)."""

    def __init__(self, ctx: StageContext):
        super().__init__()
        cfg, d = ctx.cfg, ctx.cfg.dim
        self.rows = ctx.shape.n_items + 1
        self.ids = nn.ModuleList(IdTower(ctx.shape.n_items, d) for _ in range(2))
        self.texts = nn.ModuleList(TextTower(ctx.text, d, cfg.text_hidden, cfg.dropout) for _ in range(2))
        self.drop, self.project = nn.Dropout(cfg.dropout), nn.Linear(len(CHUNKS) * d, d)

    def chunks(self, idx: torch.Tensor) -> list[torch.Tensor]:
        return [self.ids[0](idx), self.ids[1](idx), self.texts[0](idx), self.texts[1](idx)]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.project(self.drop(torch.cat(self.chunks(idx), -1))) * (idx > 0).unsqueeze(-1)


class Club(nn.Module):
    """CLUB (Cheng et al. 2020): q(y | x) = N(mu(x), exp(logvar(x))), an upper bound of I(x; y)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim))
        self.logvar = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim), nn.Tanh())

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mean_i log q(y_i|x_i) - mean_ij log q(y_j|x_i), with the estimator held fixed.

        The mean over every pair is taken in closed form, mean_j (mu_i - y_j)^2 =
        mu_i^2 - 2 mu_i mean(y) + mean(y^2): O(n d) instead of an [n, n, d] tensor (the
        logvar terms of the two means cancel).
        """
        params = {k: v.detach() for k, v in self.named_parameters()}
        mu = torch.func.functional_call(self.mu, {k[3:]: v for k, v in params.items() if k.startswith("mu.")}, (x,))
        logvar = torch.func.functional_call(
            self.logvar, {k[7:]: v for k, v in params.items() if k.startswith("logvar.")}, (x,))
        inv_var = (-logvar).exp()
        paired = ((mu - y) ** 2 * inv_var).sum(-1)
        spread = ((mu**2 - 2 * mu * y.mean(0) + (y**2).mean(0)) * inv_var).sum(-1)
        return (spread - paired).mean() / 2

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The estimator's own loss: -log q(y_i | x_i), on inputs it must not move."""
        mu, logvar = self.mu(x.detach()), self.logvar(x.detach())
        return ((((mu - y.detach()) ** 2) / logvar.exp() + logvar).sum(-1) / 2).mean()


def build_disco(ctx: StageContext) -> PadModel:
    d = ctx.cfg.dim
    aux = {"club": nn.ModuleList(Club(d) for _ in range(2)),
           "judge": nn.ModuleList(nn.Bilinear(d, d, 1) for _ in CHUNKS)}
    return PadModel({"disco": Expert(ChunkTower(ctx), make_backbone(ctx.cfg, ctx.shape.max_len))}, aux=aux)


def init_disco(model: PadModel, ctx: StageContext) -> None:
    for k in range(2):
        copy_weights(model, f"experts.disco.tower.ids.{k}.", ctx.parents["pretrain"], "experts.id.tower.")


def prefix_means(chunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, L, d]: at position t, the mean of chunk over the real items at positions <= t (zeros before any)."""
    summed = (chunk * mask.unsqueeze(-1)).cumsum(1)
    return summed / mask.cumsum(1).clamp(min=1).unsqueeze(-1)


def disco_extra(ctx: StageContext) -> ExtraLoss:
    opts, n_items, user_items = ctx.options, ctx.shape.n_items, ctx.data.user_items

    def extra(model: PadModel, rows: torch.Tensor, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        tower, club, judge = model.experts["disco"].tower, model.aux["club"], model.aux["judge"]
        items = batch.unique()
        items = items[items > 0]
        c1, c2, t1, t2 = tower.chunks(items)
        dis = club[0].bound(c1, t1) + club[1].bound(c2, t2)
        estimators = club[0].nll(c1, t1) + club[1].nll(c2, t2)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        keep = (targets > 0) & (inputs > 0)
        neg = sample_negatives(user_items[rows].to(batch.device), n_items, tuple(targets.shape), gen)
        suf = 0.0
        for k, (g, pos_c, neg_c) in enumerate(zip(*(tower.chunks(x) for x in (inputs, targets, neg)))):
            context = prefix_means(g, inputs > 0)[keep]
            pos = judge[k](pos_c[keep], context).squeeze(-1)
            negative = judge[k](neg_c[keep], context).squeeze(-1)
            suf = suf + F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
                F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))
        return opts.alpha * dis + opts.beta * suf + estimators

    return extra


register(ModelSpec(
    name="disco", title="DisCo", summary="ID and text chunks kept apart (CLUB) and each kept useful (sufficiency)",
    options=DiscoOptions,
    stages=(PRETRAIN, Stage("disco", build_disco, needs=("pretrain",), init=init_disco, defaults={"lr": 5e-3},
                            extra=disco_extra)),
))
