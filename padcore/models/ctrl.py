"""CTRL (Li et al., 2023): contrastive alignment of ID and text embeddings, then an ID model fine-tuned alone.

Stage 1 (`contrast`) trains an ID table from scratch with no recommendation loss:
a symmetric InfoNCE (cosine, temperature `infonce_temperature`) between each item's
projected ID embedding and its projected reduced text, over the distinct items of
a batch. Stage 2 (`rec`) keeps only the ID table, adds a fresh backbone and trains
with L_REC; text is not used at inference. CTRL aligns per CTR sample (a tabular
row and its text prompt); with item IDs and titles only, the item is the sample,
as the PAD paper reads CTRL. Stage 1 has no ranking to validate, so it runs its
epochs (default 20) and keeps the last.
"""

from __future__ import annotations

import torch
from torch import nn

from padcore.batches import SplitTensors
from padcore.config import TrainConfig
from padcore.experts import PadModel, TextTower, build_expert
from padcore.losses import infonce
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.trainer import FitResult, Objective, fit


def build_contrast(ctx: StageContext) -> PadModel:
    cfg = ctx.cfg
    aux = {"text": TextTower(ctx.text, cfg.dim, cfg.text_hidden, cfg.dropout),
           "id_head": nn.Linear(cfg.dim, cfg.dim), "text_head": nn.Linear(cfg.dim, cfg.dim)}
    return PadModel({"id": build_expert("id", cfg, ctx.shape.n_items, ctx.shape.max_len, None)}, aux=aux)


def symmetric_infonce(x: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """(InfoNCE(x -> y) + InfoNCE(y -> x)) / 2; row i of x and of y are the positive pair."""
    return (infonce(x, y, temperature) + infonce(y, x, temperature)) / 2


class ContrastObjective(Objective):
    """Symmetric InfoNCE between projected ID and projected text embeddings of a batch's distinct items."""

    keep_last = True

    def __init__(self, data: SplitTensors):
        self.rows = data.train

    def loss(self, model: PadModel, idx: torch.Tensor, batch: torch.Tensor, cfg: TrainConfig,
             gen: torch.Generator) -> torch.Tensor | None:
        items = batch.unique()
        items = items[items > 0]
        if len(items) < 2:
            return None
        ids = model.aux["id_head"](model.experts["id"].tower(items))
        text = model.aux["text_head"](model.aux["text"](items))
        return symmetric_infonce(ids, text, cfg.infonce_temperature)


def train_contrast(model: PadModel, ctx: StageContext, work, log) -> FitResult:
    return fit(model, ContrastObjective(ctx.data), ctx.data.valid, ctx.cfg, work, log)


def build_rec(ctx: StageContext) -> PadModel:
    return PadModel({"id": build_expert("id", ctx.cfg, ctx.shape.n_items, ctx.shape.max_len, None)})


def init_rec(model: PadModel, ctx: StageContext) -> None:
    copy_weights(model, "experts.id.tower.", ctx.parents["contrast"], "experts.id.tower.")


register(ModelSpec(
    name="ctrl", title="CTRL", summary="ID and text aligned by contrastive learning, then the ID model fine-tuned "
    "alone", stages=(Stage("contrast", build_contrast, defaults={"lr": 1e-3, "epochs": 20}, train=train_contrast),
            Stage("rec", build_rec, text=False, needs=("contrast",), init=init_rec, defaults={"lr": 5e-3, "epochs": 60})),
))
