"""MAKE (Sheng et al., CIKM '24, Taobao): an LLM expert pre-trained as MoRec, then fused with an ID expert.

MAKE decouples the multimodal parameters, which need many epochs, from the ID
parameters: stage 1 trains the text-only expert alone (exactly MoRec); stage 2
adds a fresh ID expert and trains both jointly with L_REC, their logits fused per
candidate item by per-frequency-bucket weights — the fusion PAD's own code gives
MAKE (`fusion: sum` is MAKE's original, where the multimodal output joins the ID
model's input: with dot-product scores, an unweighted sum of the two logits).
"""

from __future__ import annotations

from dataclasses import dataclass

from padcore.experts import PadModel, build_expert
from padcore.fusion import BucketGate, SumFusion
from padcore.models.morec import MOREC
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.options import option


@dataclass
class MakeOptions:
    fusion: str = option("bucket", "bucket: per-frequency-bucket weights learned with the experts (PAD's code); "
                         "sum: the plain sum of the two logits (MAKE's concatenation)", choices=("bucket", "sum"))


def build_make(ctx: StageContext) -> PadModel:
    cfg, shape = ctx.cfg, ctx.shape
    experts = {k: build_expert(k, cfg, shape.n_items, shape.max_len, ctx.text) for k in ("id", "llm")}
    fusion = BucketGate(2, ctx.buckets, shape.n_buckets) if ctx.options.fusion == "bucket" else SumFusion(2)
    return PadModel(experts, fusion)


def init_make(model: PadModel, ctx: StageContext) -> None:
    copy_weights(model, "experts.llm.", ctx.parents["morec"], "experts.llm.")


register(ModelSpec(
    name="make", title="MAKE", summary="LLM expert pre-trained as MoRec, then trained with a fresh ID expert, fused",
    options=MakeOptions,
    stages=(MOREC, Stage("fuse", build_make, needs=("morec",), init=init_make, defaults={"lr": 5e-3})),
))
