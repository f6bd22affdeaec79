"""MoRec (Yuan et al., SIGIR '23): the item is its text alone — no ID table.

An MLP reduces the frozen text vector to the model width and the backbone runs on
those vectors, trained with L_REC from scratch. This is MoRec's "two-stage" form
(frozen text features + a trainable MLP), the one the PAD paper ran; MoRec's
headline results fine-tune the text encoder end to end, which a frozen text
artifact cannot do.
"""

from __future__ import annotations

from padcore.experts import PadModel, build_expert
from padcore.models.spec import ModelSpec, Stage, StageContext, register


def build_morec(ctx: StageContext) -> PadModel:
    return PadModel({"llm": build_expert("llm", ctx.cfg, ctx.shape.n_items, ctx.shape.max_len, ctx.text)})


MOREC = Stage("morec", build_morec, defaults={"lr": 5e-3})

register(ModelSpec(
    name="morec", title="MoRec", summary="text only: an MLP over the frozen text vectors, no ID table",
    stages=(MOREC,),
))
