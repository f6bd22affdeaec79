"""Hybrid encoding (CoLLM / LLaRA): the ID embedding concatenated with the reduced text, fed to the backbone.

An item is W · Dropout([id ; MLP(text)]): its ID embedding (width d) and its
reduced text (width d) side by side, projected back to the model width by a
trainable linear layer. As in CoLLM and LLaRA the collaborative embeddings come
from a trained ID model (PAD's phase 1) and stay frozen (`freeze_id`); the text
MLP, the projection and a fresh backbone learn with L_REC. The originals feed these
item vectors to an LLM as extra tokens; here the sequential backbone plays that
part, and the same vectors are the output embeddings the scores are taken against —
hence no nonlinearity after the projection: a GELU there (an earlier version's)
confines every item's output vector and held Hybrid below SASRec (bench/RESULTS.md,
"baselines below SASRec").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from padcore.backbones import make_backbone
from padcore.experts import Expert, IdTower, ItemTower, PadModel, TextTower
from padcore.models.idonly import PRETRAIN
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.options import option


@dataclass
class HybridOptions:
    freeze_id: bool = option(True, "keep the phase-1 ID table frozen, as CoLLM and LLaRA keep their "
                             "collaborative model")


class ConcatTower(ItemTower):
    """[id ; MLP(text)] -> Dropout -> Linear(d_id + d_text -> d)."""

    def __init__(self, ids: IdTower, text: TextTower, dim: int, dropout: float):
        super().__init__()
        self.rows = ids.rows
        self.ids, self.text = ids, text
        width = ids.emb.embedding_dim + text.norm.normalized_shape[0]
        self.drop, self.project = nn.Dropout(dropout), nn.Linear(width, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.project(self.drop(torch.cat([self.ids(idx), self.text(idx)], -1))) * (idx > 0).unsqueeze(-1)


def build_hybrid(ctx: StageContext) -> PadModel:
    cfg, shape = ctx.cfg, ctx.shape
    tower = ConcatTower(IdTower(shape.n_items, cfg.dim), TextTower(ctx.text, cfg.dim, cfg.text_hidden, cfg.dropout),
                        cfg.dim, cfg.dropout)
    return PadModel({"hybrid": Expert(tower, make_backbone(cfg, shape.max_len))})


def init_hybrid(model: PadModel, ctx: StageContext) -> None:
    copy_weights(model, "experts.hybrid.tower.ids.", ctx.parents["pretrain"], "experts.id.tower.")
    if ctx.options.freeze_id:
        model.experts["hybrid"].tower.ids.requires_grad_(False)


register(ModelSpec(
    name="hybrid", title="Hybrid", summary="ID embedding (phase 1, frozen) concatenated with the reduced text",
    options=HybridOptions,
    stages=(PRETRAIN, Stage("hybrid", build_hybrid, needs=("pretrain",), init=init_hybrid, defaults={"lr": 5e-3})),
))
