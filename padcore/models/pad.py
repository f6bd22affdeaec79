"""PAD: Pre-train, Align, and Disentangle (the paper's Sec. 3), and SMEM, its no-alignment twin.

- pretrain: the ID model (`padcore.models.idonly`).
- align: the alignment expert — its own copy of the phase-1 ID table and backbone
  (trainable) plus an MLP over the frozen text; an item is `id + MLP(text)`;
  L_REC + gamma * MK-MMD^2(MLP(text), id) over the batch's distinct items.
- finetune ("disentangle"): the ID expert (phase-1 weights), the alignment expert
  (phase-2 weights), an LLM expert (text only: MLP + backbone, started from the
  alignment expert's) and — pad's addition, not the paper's — a text-similarity
  expert (no parameters: an item's text cosine to the user's recent items, the
  text view that training takes away from the other text experts) and, on
  request, a tuned-similarity expert (the same under a low-rank metric phase 3
  learns with L_REC, starting from the similarity expert's ranking), fused per
  candidate item by its frequency bucket (padcore/fusion.py). `experts` picks
  them (the paper's three: `id,align,llm`). How the fusion learns is `fusion`:
  - `bucket` (default): the experts are kept as trained; per-bucket weights over
    their logits (and a temperature per expert) are fitted with cross-entropy on
    interactions no expert trained on — the validation targets of a random half of
    the users, each against its `fusion_negatives` best-scored rivals — with the
    epoch chosen by nDCG@10 on the other half's, then the other way round, the two
    fits averaged;
  - `calibrated`: the same over calibrated scores (each expert's log-probabilities
    over the whole catalogue);
  - `global`: the same with one weight vector for every item (no gate, Sec. 4.7);
  - `paper`: the paper's recipe — eq. 11's gate over raw logits, trained jointly
    with all experts on the training targets with L_REC;
  - `equal`: no training, the equal-weight average of the experts' raw logits
    (the `paper` recipe's starting point).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil

import torch
import torch.nn.functional as F

from padcore.batches import EvalSplit
from padcore.config import PAPER_EXPERTS, TrainConfig
from padcore.experts import PadModel, build_expert
from padcore.fusion import BucketGate, FrequencyGate
from padcore.losses import alignment_loss
from padcore.models.idonly import PRETRAIN
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.trainer import ExtraLoss, FitResult, Objective, RecObjective, fit


# ---------------------------------------------------------------- phase 2


def build_align(ctx: StageContext) -> PadModel:
    return PadModel({"align": build_expert("align", ctx.cfg, ctx.shape.n_items, ctx.shape.max_len, ctx.text)})


def init_align(model: PadModel, ctx: StageContext) -> None:
    id_weights = ctx.parents["pretrain"]
    copy_weights(model, "experts.align.tower.ids.", id_weights, "experts.id.tower.")
    copy_weights(model, "experts.align.backbone.", id_weights, "experts.id.backbone.")
    if ctx.cfg.align_mode == "frozen":
        model.experts["align"].tower.ids.emb.weight.requires_grad_(False)


def alignment_extra(ctx: StageContext) -> ExtraLoss:
    """gamma * alignment loss over (up to mmd_items of) the distinct real items of a batch."""
    cfg = ctx.cfg

    def extra(model: PadModel, rows: torch.Tensor, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        tower = model.experts["align"].tower
        items = batch.unique()
        items = items[items > 0]
        if len(items) > cfg.mmd_items:
            items = items[torch.randperm(len(items), generator=gen, device=items.device)[: cfg.mmd_items]]
        return cfg.gamma * alignment_loss(tower.text(items), tower.ids(items), cfg)

    return extra


def anchoring(cfg: TrainConfig) -> float:
    """L_REC's weight in phase 2: none for non-anchored alignment (MMD only)."""
    return 0.0 if cfg.align_mode == "non-anchored" else 1.0


# Phase 2 starts from trained weights, where a lower rate keeps what phase 1 learned (Prime Pantry, BCE,
# phase 2 from one phase-1 model, 60 epochs: best valid nDCG@10 2.78 at 2e-3, early-stopped at epoch 26 by
# its noise, against 2.91 at 1e-3; 5e-3 gave 2.84, stopped at 45).
ALIGN = Stage("align", build_align, title="alignment expert", needs=("pretrain",), init=init_align, defaults={"lr": 1e-3},
              extra=alignment_extra, rec_weight=anchoring)


# ---------------------------------------------------------------- phase 3


def build_triple(ctx: StageContext) -> PadModel:
    cfg, shape = ctx.cfg, ctx.shape
    experts = {k: build_expert(k, cfg, shape.n_items, shape.max_len, ctx.text) for k in cfg.experts}
    if len(experts) == 1:
        return PadModel(experts)
    if cfg.fusion == "paper":
        widths = [ctx.text.dim if k in ("sim", "tuned") else cfg.dim for k in experts]
        return PadModel(experts, FrequencyGate(widths, cfg.dim, ctx.buckets, shape.n_buckets))
    if cfg.fusion == "global":  # every item in one bucket: one weight vector
        return PadModel(experts, BucketGate(len(experts), torch.zeros_like(ctx.buckets), 0))
    return PadModel(experts, BucketGate(len(experts), ctx.buckets, shape.n_buckets, raw=cfg.fusion != "calibrated"))


def init_triple(model: PadModel, ctx: StageContext) -> None:
    id_weights, align_weights = ctx.parents["pretrain"], ctx.parents["align"]
    if "id" in model.experts:
        copy_weights(model, "experts.id.", id_weights, "experts.id.")
    if "align" in model.experts:
        copy_weights(model, "experts.align.", align_weights, "experts.align.")
    if "llm" in model.experts and ctx.cfg.llm_init == "align":
        # a text-only expert that already speaks the collaborative space
        copy_weights(model, "experts.llm.tower.", align_weights, "experts.align.tower.text.")
        copy_weights(model, "experts.llm.backbone.", align_weights, "experts.align.backbone.")


def init_spreads(model: PadModel, ctx: StageContext) -> None:
    """Each expert starts at unit spread, so that the equal-weight start weighs the experts alike whatever
    their scale (a cosine's spread is ~1/40 of an ID model's logits'); weight decay then pulls each
    temperature back toward 1, the experts' own scale (on seed 0 of both datasets this held-out nDCG@10
    4.75 / 8.75 where the fit without that pull, at unit spread, reached 4.49 / 8.64)."""
    spread = logit_spreads(model, ctx.data.valid.inputs)
    with torch.no_grad():
        model.fusion.spread.copy_(spread)
        model.fusion.log_temperature.copy_(-spread.log())


SPREAD_USERS = 1024  # validation users whose logits measure each expert's spread
SPREAD_CHUNK = 128  # of them at a time (users x items scores per expert)


def logit_spreads(model: PadModel, inputs: torch.Tensor) -> torch.Tensor:
    """[n_experts] each expert's logits' standard deviation over the real items, averaged over (the first
    SPREAD_USERS of) the users of `inputs` [U, L], in evaluation mode."""
    training = model.training
    model.eval()
    with torch.no_grad():
        tables = [e.tower.table() for e in model.experts.values()]
        per_user: list[list[torch.Tensor]] = [[] for _ in tables]  # per expert: each user's std of its logits
        for chunk in inputs[:SPREAD_USERS].split(SPREAD_CHUNK):
            states = model.states_from(chunk.to(tables[0].device), tables)
            for stds, s, t in zip(per_user, states, tables):
                stds.append((s[:, -1] @ t[1:].T).float().std(1))
    model.train(training)
    return torch.stack([torch.cat(stds).mean() for stds in per_user]).clamp_min(1e-12)


class HeldOutObjective(Objective):
    """Cross-entropy of the fused scores on held-out targets (`rival_softmax`); the experts stay as they are.

    A row is a user's validation input and target; the items before the target are
    excluded from the softmax as evaluation excludes them from the ranking, and a
    target that is one of them (a repeat, never a hit) is left out.
    """

    def __init__(self, model: PadModel, split: EvalSplit):
        self.rows = torch.cat([split.inputs, split.targets[:, None]], 1)
        self.history = split.history
        self.frozen = tuple(model.experts.values())
        self.tables: list[torch.Tensor] = []

    def start_epoch(self, model: PadModel, device: torch.device) -> None:
        # the experts are frozen: their item tables are computed once per epoch, not at every batch, and in
        # evaluation mode whatever mode a resumed run left them in (no dropout), as they score while frozen
        for module in self.frozen:
            module.eval()
        with torch.no_grad():
            self.tables = [e.tower.table() for e in model.experts.values()]

    def loss(self, model: PadModel, idx: torch.Tensor, batch: torch.Tensor, cfg: TrainConfig,
             gen: torch.Generator) -> torch.Tensor | None:
        inputs, targets = batch[:, :-1], batch[:, -1]
        states = model.states_from(inputs, self.tables)
        scores = model.logits([s[:, -1] for s in states], side=model.item_side(tables=self.tables)).float()
        seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, self.history[idx].to(scores.device), True)
        seen[:, 0] = True
        fresh = ~seen.gather(1, targets[:, None]).squeeze(1)
        if not fresh.any():
            return None
        return rival_softmax(scores[fresh].masked_fill(seen[fresh], float("-inf")), targets[fresh],
                             cfg.fusion_negatives)


def rival_softmax(scores: torch.Tensor, targets: torch.Tensor, rivals: int) -> torch.Tensor:
    """Cross-entropy of each target against its `rivals` best-scored other items (0 = against every item).

    The full softmax rewards raising a target wherever it ranks; against its closest
    rivals only, a target gains by entering the top of the list, which is what
    nDCG@10 counts.
    """
    if not rivals or rivals >= scores.shape[1] - 1:
        return F.cross_entropy(scores, targets)
    own = scores.gather(1, targets[:, None])
    best = scores.scatter(1, targets[:, None], float("-inf")).topk(rivals, 1).values
    return F.cross_entropy(torch.cat([own, best], 1), torch.zeros_like(targets))


def trained_here(model: PadModel, cfg: TrainConfig) -> list[str]:
    """The experts phase 3 trains alone before the fusion: the tuned-similarity expert (its metric starts
    untrained) and, with `llm_train=rec`, the LLM expert."""
    return [k for k in model.experts if k == "tuned" or (k == "llm" and cfg.llm_train == "rec")]


def train_expert(model: PadModel, kind: str, ctx: StageContext, work, log) -> dict:
    """Train one expert alone with L_REC on the training split, early-stopped on validation; its summary.

    The LLM expert (`llm_train=rec`), started from the alignment expert's text part, becomes a
    text-only recommender of its own (as MoRec is) rather than half of another expert; the tuned
    expert learns a metric over the text from the similarity expert's ranking, its epoch 0.
    """
    log(f" training the {kind} expert alone (L_REC on the training split, early-stopped on validation nDCG@10)")
    folder = work / kind
    folder.mkdir(exist_ok=True)
    result = fit(PadModel({kind: model.experts[kind]}), RecObjective(ctx.data), ctx.data.valid, ctx.cfg, folder, log)
    shutil.rmtree(folder)  # its checkpoint is not part of the artifact
    return {"best_epoch": result.best_epoch, "epochs": result.epochs,
            "seconds_per_epoch": round(result.seconds_per_epoch, 3),
            "valid_ndcg@10": max((h["valid_ndcg@10"] for h in result.history), default=None)}


def train_fusion(model: PadModel, ctx: StageContext, work, log) -> FitResult:
    """Phase 3: fit the fusion as `fusion` says (see the module docstring), after the training of the
    experts phase 3 trains alone (`trained_here`)."""
    cfg = ctx.cfg
    if cfg.fusion == "paper":
        return fit(model, RecObjective(ctx.data), ctx.data.valid, cfg, work, log)
    own = {kind: train_expert(model, kind, ctx, work, log) for kind in trained_here(model, cfg)}
    if isinstance(model.fusion, BucketGate) and model.fusion.raw:  # every expert as the fusion will see it
        init_spreads(model, ctx)
    if cfg.fusion == "equal" or len(model.experts) == 1:  # nothing to fit: the experts stay as they were trained
        result = FitResult(0, 0, [], 0.0)
    else:
        result = cross_fit(model, ctx, work, log)
    for kind, summary in own.items():
        result.info[f"{kind}_expert"] = summary
    return result


def cross_fit(model: PadModel, ctx: StageContext, work, log) -> FitResult:
    """A held-out fusion, cross-fitted: the validation users are split in two halves;
    the fusion is fitted on one half's targets with its epoch chosen on the other's,
    then the other way round, and the two fits' parameters are averaged — every
    validation user helps fit and choose, and neither choice rests on half the noise.
    With `valid_users` set, a seeded sample of that many users stands for them all.
    """
    cfg, data = ctx.cfg, ctx.data
    users = torch.randperm(len(data.valid.targets), generator=torch.Generator().manual_seed(cfg.seed))
    if cfg.valid_users:  # large catalogues: a seeded sample fits and chooses (each epoch scores users x items)
        users = users[: cfg.valid_users]
    halves = users[: len(users) // 2].sort().values, users[len(users) // 2 :].sort().values
    fusion, start = model.fusion, copy.deepcopy(model.fusion.state_dict())
    fits, results = [], []
    for fold, (fit_rows, select_rows) in enumerate((halves, halves[::-1])):
        log(f" fold {fold + 1}/2: fitting the {cfg.fusion} fusion on the validation targets of {len(fit_rows):,} "
            f"users, choosing its epoch on the other {len(select_rows):,}")
        fusion.load_state_dict(start)
        folder = work / f"fold{fold + 1}"
        folder.mkdir(exist_ok=True)
        results.append(fit(model, HeldOutObjective(model, data.valid.subset(fit_rows)),
                           data.valid.subset(select_rows), dataclasses.replace(cfg, lr=cfg.fusion_lr), folder, log))
        fits.append({k: v.detach().clone() for k, v in fusion.state_dict().items()})
    fusion.load_state_dict({k: (fits[0][k] + fits[1][k]) / 2 if v.is_floating_point() else v
                            for k, v in fits[0].items()})
    for fold in (1, 2):  # their checkpoints are not part of the artifact
        shutil.rmtree(work / f"fold{fold}")
    with torch.no_grad():
        weights = fusion.item_weights(fusion.bucket_weights(), 0)  # per bucket: each expert's share of the score
    result = FitResult(min(r.best_epoch for r in results), sum(r.epochs for r in results),
                       [dict(h, fold=k + 1) for k, r in enumerate(results) for h in r.history],
                       sum(r.seconds_per_epoch * r.epochs for r in results) / max(sum(r.epochs for r in results), 1))
    result.info["fusion"] = {
        "kind": cfg.fusion, "experts": list(model.experts), "best_epochs": [r.best_epoch for r in results],
        "weights": [[round(float(w), 4) for w in row] for row in weights],  # row b = bucket b (row 0 = padding)
        "temperatures": [round(float(t), 4) for t in fusion.log_temperature.detach().exp()],
    }
    return result


# phase 3's own options take their defaults here, never an earlier phase's artifact's values
PHASE3_OPTIONS = ("experts", "sim_decay", "tuned_rank", "fusion", "fusion_lr", "fusion_negatives", "llm_init",
                  "llm_train")
FINETUNE = Stage("finetune", build_triple, needs=("pretrain", "align"), init=init_triple, train=train_fusion,
                 defaults={"lr": 1e-3, **{k: TrainConfig.__dataclass_fields__[k].default for k in PHASE3_OPTIONS}})

register(ModelSpec(
    name="pad", title="PAD", summary="pre-train, align (L_REC + MK-MMD), disentangle (four experts, "
    "frequency-aware fusion)", stages=(PRETRAIN, ALIGN, FINETUNE),
))

register(ModelSpec(
    name="smem", title="SMEM", summary="PAD without alignment: shared (ID + text) and modality-specific experts",
    stages=(PRETRAIN, dataclasses.replace(ALIGN, extra=None),
            dataclasses.replace(FINETUNE, defaults={**FINETUNE.defaults, "experts": PAPER_EXPERTS})),
))
