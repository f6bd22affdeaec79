"""What a registered model is: a name, what it needs, and its stages.

A stage builds a `PadModel` from the configuration and the data's shape, copies
what it starts from out of earlier stages' weights, and trains it — by default
with `trainer.fit` (L_REC plus an optional extra loss, early stopping on
validation nDCG@10), or with a procedure of its own. `padcore.training` runs
stages and writes their model artifacts; `padcore.checkpoint.load_model`
rebuilds any stage's model with the same `build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from padcore.batches import SplitTensors
from padcore.config import TrainConfig
from padcore.errors import PadError
from padcore.registry import MODELS
from padcore.experts import PadModel, TextTable
from padcore.trainer import ExtraLoss, FitResult


@dataclass(frozen=True)
class Shape:
    """What a model's weights are sized by; saved in config.json."""

    n_items: int
    max_len: int
    n_buckets: int
    text_dim: int | None


@dataclass
class StageContext:
    """Everything a stage's build, init, extra loss and training see."""

    cfg: TrainConfig
    options: Any  # the model's own options dataclass (None when it has none)
    shape: Shape
    text: TextTable | None  # the frozen text table, shared by every text tower
    buckets: torch.Tensor  # [N+1] frequency bucket of each item (0 = padding)
    parents: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # earlier stages' weights by stage
    data: SplitTensors | None = None  # training and evaluation tensors (None when only rebuilding a saved model)


def full_rec_weight(cfg: TrainConfig) -> float:
    return 1.0


@dataclass(frozen=True)
class Stage:
    """One training stage of a model."""

    name: str
    build: Callable[[StageContext], PadModel]
    text: bool = True  # its model reads item texts
    title: str = ""  # an earlier stage's own name in results tables (e.g. PAD's "alignment expert")
    needs: tuple[str, ...] = ()  # earlier stages whose weights `init` reads
    init: Callable[[PadModel, StageContext], None] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # training options this stage sets unless the user does
    extra: Callable[[StageContext], ExtraLoss] | None = None  # a loss added to L_REC
    rec_weight: Callable[[TrainConfig], float] = full_rec_weight
    train: Callable[..., FitResult] | None = None  # (model, ctx, work, log) -> FitResult; default trainer.fit


@dataclass(frozen=True)
class ModelSpec:
    """A trainable model: PAD or a baseline."""

    name: str
    title: str  # its column in the comparison tables
    summary: str  # one line for listings
    stages: tuple[Stage, ...]
    options: type | None = None  # a dataclass of the model's own options (padcore.options fields)

    @property
    def needs_text(self) -> bool:
        return any(s.text for s in self.stages)

    def display_name(self, backbone: str) -> str:
        """The model's name in a results table, e.g. "SASRec" for the ID model on SASRec."""
        from padcore.backbones import TITLES

        return self.title.format(backbone=TITLES.get(backbone, backbone))

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PadError(f"model {self.name!r} has no stage {name!r}; its stages: {', '.join(s.name for s in self.stages)}")


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry under its name."""
    return MODELS.register(spec.name)(spec)


def copy_weights(model: PadModel, dst_prefix: str, weights: dict[str, torch.Tensor], src_prefix: str) -> None:
    """Load the weights under `src_prefix` into the model's parameters under `dst_prefix`."""
    sub = {dst_prefix + k[len(src_prefix):]: v for k, v in weights.items() if k.startswith(src_prefix)}
    own = model.state_dict()
    missing = [k for k in own if k.startswith(dst_prefix) and k not in sub]
    if not sub or missing:
        raise PadError(f"checkpoint lacks weights for {dst_prefix}* (missing {missing[:3]})")
    with torch.no_grad():
        for k, v in sub.items():
            own[k].copy_(v)
