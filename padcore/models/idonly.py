"""The backbone on item IDs alone: the paper's "SASRec" column, Table 3's "Origin", and PAD's phase 1.

One expert: an ID embedding table and the configured backbone (SASRec, GRU4Rec
or Caser), trained with L_REC from scratch.
"""

from __future__ import annotations

from padcore.experts import PadModel, build_expert
from padcore.models.spec import ModelSpec, Stage, StageContext, register


def build_id(ctx: StageContext) -> PadModel:
    return PadModel({"id": build_expert("id", ctx.cfg, ctx.shape.n_items, ctx.shape.max_len, None)})


PRETRAIN = Stage("pretrain", build_id, text=False, defaults={"lr": 5e-3})

register(ModelSpec(
    name="id", title="{backbone}", summary="the backbone on item IDs alone (SASRec, GRU4Rec or Caser)",
    stages=(PRETRAIN,),
))
