"""The training configuration shared by the three phases, with working defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from padcore.errors import PadError

BACKBONES = ("sasrec", "gru4rec", "caser")
LOSSES = ("bce", "ce", "sampled")
KERNELS = ("gaussian", "laplacian", "linear", "cosine", "infonce")
ALIGN_MODES = ("anchored", "non-anchored", "frozen")
SCHEDULES = ("constant", "cosine")
# Peak rates per phase. Phases 2 and 3 start from trained weights, where a lower rate keeps what phase 1
# learned (Prime Pantry, BCE, phase 2 from one phase-1 model, 60 epochs: best valid nDCG@10 2.78 at 2e-3,
# early-stopped at epoch 26 by its noise, against 2.91 at 1e-3; 5e-3 gave 2.84, stopped at 45).
PHASE_LR = {"pretrain": 5e-3, "align": 1e-3, "finetune": 1e-3}
EXPERTS = ("id", "align", "llm")


@dataclass
class TrainConfig:
    """Every knob of a training phase; printed into each model artifact."""

    backbone: str = "sasrec"  # sasrec | gru4rec | caser
    loss: str = "bce"  # bce: one sampled negative per position (the paper) | ce: full softmax | sampled: shared negatives
    dim: int = 64  # model width d
    layers: int = 2  # SASRec blocks / GRU layers
    heads: int = 1  # SASRec attention heads
    dropout: float = 0.1  # the paper's dropout
    max_len: int = 0  # input length; 0 = the dataset's protocol max_len
    caser_window: int = 5  # Caser's convolution window L
    epochs: int = 60  # the most epochs a phase runs, and the length of the cosine rate schedule
    schedule: str = "cosine"  # cosine: the rate decays to 0 over `epochs` (BCE converges in far fewer epochs) | constant
    patience: int = 10  # epochs without a better validation nDCG@10 (the paper's early stop)
    batch_size: int = 256  # the paper uses 16; larger batches with a larger rate train far faster on CPUs
    lr: float = 0.0  # peak AdamW rate; 0 = the phase's own default, PHASE_LR (the rate is never inherited)
    weight_decay: float = 0.1  # AdamW decoupled weight decay (the paper's L2 weight)
    sampled_negatives: int = 256  # negatives shared by a batch for loss=sampled
    gamma: float = 0.2  # weight of the alignment loss (phase 2)
    kernel: str = "gaussian"  # alignment loss: gaussian (MK-MMD) | laplacian | linear | cosine | infonce
    kernels: int = 5  # m: kernels in the MK-MMD family, bandwidths 2^k x mean sq. distance, k = -m+2..1
    align_mode: str = "anchored"  # anchored (L_REC + gamma MMD) | non-anchored (MMD only) | frozen (ID table frozen)
    mmd_items: int = 512  # at most this many distinct batch items enter the MMD (cost is quadratic)
    infonce_temperature: float = 0.1
    text_hidden: int = 256  # hidden width of the text-reduction MLP
    experts: tuple[str, ...] = EXPERTS  # phase 3 experts; drop any for the ablation
    gate: bool = True  # frequency-aware gate; False fuses experts with one learned weight vector
    llm_init: str = "align"  # phase 3 LLM expert starts from the alignment expert's text MLP and encoder, or "fresh"
    eval_batch: int = 1024  # users per chunk in full-ranking evaluation
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        self.experts = tuple(self.experts)
        for name, value, allowed in (
            ("backbone", self.backbone, BACKBONES),
            ("loss", self.loss, LOSSES),
            ("kernel", self.kernel, KERNELS),
            ("align_mode", self.align_mode, ALIGN_MODES),
            ("schedule", self.schedule, SCHEDULES),
        ):
            if value not in allowed:
                raise PadError(f"config field {name!r} is {value!r}; expected one of {', '.join(allowed)}")
        if self.llm_init not in ("align", "fresh"):
            raise PadError(f"config field 'llm_init' is {self.llm_init!r}; expected align or fresh")
        bad = [e for e in self.experts if e not in EXPERTS]
        if bad or not self.experts:
            raise PadError(f"config field 'experts' is {self.experts}; expected a non-empty subset of {EXPERTS}")
        if self.dim % self.heads:
            raise PadError(f"config field 'dim' ({self.dim}) must be a multiple of 'heads' ({self.heads})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["experts"] = list(self.experts)
        return d

    @classmethod
    def from_options(cls, base: dict[str, Any] | None = None, **options: Any) -> "TrainConfig":
        """Build from a dict plus keyword overrides; unknown names are an error."""
        merged = {**(base or {}), **options}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise PadError(f"unknown training option(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**merged)
