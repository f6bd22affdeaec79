"""The training configuration shared by every model and stage, with working defaults and checked ranges."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from padcore.errors import PadError
from padcore.options import DEVICE_PATTERN, build_options, check_options, option
from padcore.registry import ALIGN_LOSSES, BACKBONES, REC_LOSSES

ALIGN_MODES = ("anchored", "non-anchored", "frozen")
SCHEDULES = ("constant", "cosine")
EXPERTS = ("id", "align", "llm", "sim", "tuned")
DEFAULT_EXPERTS = ("id", "align", "llm", "sim", "tuned")
PAPER_EXPERTS = ("id", "align", "llm")  # the paper's three; `sim` and `tuned` are pad's own (README, "how pad differs")
FUSIONS = ("bucket", "calibrated", "global", "paper", "equal")


@dataclass
class TrainConfig:
    """Every knob of a training stage; printed into each model artifact."""

    backbone: str = option("sasrec", "sequence encoder", choices=BACKBONES.names)
    loss: str = option("bce", "L_REC: bce = one sampled negative per position (the paper); ce = full softmax; "
                       "sampled = negatives shared by a batch", choices=REC_LOSSES.names)
    dim: int = option(64, "model width d", low=1)
    layers: int = option(2, "SASRec blocks / GRU layers", low=1)
    heads: int = option(1, "SASRec attention heads (must divide dim)", low=1)
    dropout: float = option(0.1, "dropout probability (the paper's 0.1)", low=0, high=1, high_open=True)
    max_len: int = option(0, "input length; 0 = the dataset's protocol max_len", low=0)
    caser_window: int = option(5, "Caser's convolution window L", low=1)
    epochs: int = option(60, "the most epochs a stage runs, and the length of the cosine rate schedule", low=1)
    schedule: str = option("cosine", "cosine: the rate decays to 0 over `epochs`; constant", choices=SCHEDULES)
    patience: int = option(10, "epochs without a better validation nDCG@10 before stopping (the paper's 10)", low=1)
    batch_size: int = option(256, "users per batch (the paper uses 16; larger batches train far faster on CPUs)", low=1)
    lr: float = option(5e-3, "peak AdamW rate; a stage that starts from trained weights sets its own default "
                       "(never inherited)", low=0, low_open=True)
    weight_decay: float = option(0.1, "AdamW decoupled weight decay (the paper's L2 weight 0.1)", low=0)
    sampled_negatives: int = option(256, "negatives shared by a batch for loss=sampled", low=1)
    gamma: float = option(0.2, "weight of the alignment loss (phase 2)", low=0)
    kernel: str = option("gaussian", "alignment loss: gaussian (MK-MMD) | laplacian | linear | cosine | infonce",
                         choices=ALIGN_LOSSES.names)
    kernels: int = option(5, "m: kernels in the MK-MMD family, bandwidths 2^k x mean sq. distance, k = -m+2..1",
                          low=1)
    align_mode: str = option("anchored", "anchored: L_REC + gamma MMD; non-anchored: MMD only; frozen: ID table "
                             "frozen", choices=ALIGN_MODES)
    mmd_items: int = option(512, "at most this many distinct batch items enter the MMD (its cost is quadratic)",
                            low=2)
    infonce_temperature: float = option(0.1, "temperature of the InfoNCE alignment loss", low=0, low_open=True)
    text_hidden: int = option(256, "hidden width of the text-reduction MLP", low=1)
    experts: tuple[str, ...] = option(DEFAULT_EXPERTS, "phase-3 experts: id, align, llm (the paper's three), sim "
                                      "(text similarity, pad's) and tuned (text similarity under a metric phase 3 "
                                      "learns, pad's); drop any for the ablation",
                                      choices=EXPERTS)
    sim_decay: float = option(0.5, "text-similarity experts: weight of an item `a` steps before the latest is "
                              "sim_decay^a (0 = the latest item alone, 1 = all alike)", low=0, high=1)
    tuned_rank: int = option(64, "tuned-similarity expert: rank of its learned metric I + U V^T", low=1)
    fusion: str = option("bucket", "phase 3: bucket = per-bucket weights over the experts' logits, fitted on "
                         "held-out targets; calibrated = the same over log-probabilities; global = one weight vector "
                         "so fitted (no gate); paper = eq. 11's gate trained jointly with the experts; equal = the "
                         "untrained equal-weight average", choices=FUSIONS)
    fusion_lr: float = option(0.0, "phase 3: peak rate of a fusion fitted on held-out targets; 0 = by the loss: "
                              "0.01 for ce, 0.05 otherwise (each chosen on validation, bench/RESULTS.md)", low=0)
    fusion_negatives: int = option(100, "phase 3: a held-out fusion's softmax runs over each target and this many "
                                   "best-scored other items (0 = the whole catalogue)", low=0)
    llm_init: str = option("align", "phase-3 LLM expert starts from the alignment expert's text MLP and backbone, "
                           "or fresh", choices=("align", "fresh"))
    llm_train: str = option("none", "phase 3: rec = the LLM expert is trained alone with L_REC on the training split "
                            "(early-stopped on validation) before the fusion is fitted; none = it stays as "
                            "`llm_init` made it", choices=("rec", "none"))
    eval_batch: int = option(1024, "users per chunk in full-ranking evaluation", low=1)
    valid_users: int = option(0, "rank this many (seeded) validation users to choose the epoch and report the "
                              "validation metrics, and fit phase 3's fusion on them; 0 = all (large catalogues: "
                              "each full ranking costs users x items)", low=0)
    seed: int = option(0, "random seed", low=0)
    device: str = option("auto", "auto | cpu | cuda | cuda:N", pattern=DEVICE_PATTERN)
    threads: int = option(0, "torch CPU threads; 0 = torch's default", low=0)

    def __post_init__(self) -> None:
        check_options(self, "training")
        if not self.fusion_lr:  # by the loss: with ce the faster fit kept its start in half the runs
            self.fusion_lr = 0.01 if self.loss == "ce" else 0.05
        if self.dim % self.heads:
            raise PadError(f"training option 'dim' ({self.dim}) must be a multiple of 'heads' ({self.heads})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["experts"] = list(self.experts)
        return d

    @classmethod
    def from_options(cls, base: dict[str, Any] | None = None, **options: Any) -> "TrainConfig":
        """Build from a dict plus keyword overrides; unknown names are an error."""
        return build_options(cls, "training", {**(base or {}), **options})
