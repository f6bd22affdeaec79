"""PAD: Pre-train, Align, and Disentangle (the paper's Sec. 3), and SMEM, its no-alignment twin.

- pretrain: the ID model (`padcore.models.idonly`).
- align: the alignment expert — its own copy of the phase-1 ID table and backbone
  (trainable) plus an MLP over the frozen text; an item is `id + MLP(text)`;
  L_REC + gamma * MK-MMD^2(MLP(text), id) over the batch's distinct items.
- finetune ("disentangle"): the ID expert (phase-1 weights), the alignment expert
  (phase-2 weights), an LLM expert (text only: MLP + backbone, started from the
  alignment expert's) and — pad's addition, not the paper's — a text-similarity
  expert (no parameters: an item's text cosine to the user's recent items, the
  text view that training takes away from the other text experts) and a
  tuned-similarity expert (the same under a low-rank metric phase 3 learns with
  L_REC, starting from the similarity expert's ranking), fused per candidate
  item by its frequency bucket (padcore/fusion.py). `experts` picks them (the
  paper's three: `id,align,llm`). How the fusion learns is `fusion`:
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

import numpy as np
import torch
import torch.nn.functional as F

from padcore.batches import EvalSplit
from padcore.config import PAPER_EXPERTS, TrainConfig
from padcore.experts import PadModel, build_expert
from padcore.fusion import BucketGate, FrequencyGate, folded
from padcore.losses import alignment_loss
from padcore.models.idonly import PRETRAIN
from padcore.models.spec import ModelSpec, Stage, StageContext, copy_weights, register
from padcore.metrics import linear_target_ranks, target_ranks
from padcore.trainer import (SCORE_BUDGET, ExtraLoss, FitResult, Objective, RecObjective, autocast, fit, item_block,
                             use_device)


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
    with torch.no_grad():
        model.fusion.spread.copy_(logit_spreads(model, ctx.data.valid.inputs))
    model.fusion.restart()


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


KEEP_BYTES = 5 << 29  # a fusion fit keeps its users' expert logits up to 2.5 GiB (Prime Pantry, five experts: 2.0 GiB)


class FrozenExperts:
    """The experts' logits for the users of a split, computed once for a fusion fit.

    The experts do not change while a fusion is fitted: their item tables and each user's
    last states are computed once (in evaluation mode), and the logits themselves, [U, N+1]
    per expert, are kept when they fit in `budget` bytes — a linear fusion's scores are then
    a weighted sum of them, several times cheaper than the products they come from. Else a
    batch's logits are those products, one per expert (or one, folded, for a linear fusion).
    """

    def __init__(self, model: PadModel, inputs: torch.Tensor, device: torch.device, budget: int = KEEP_BYTES):
        model.to(device).eval()
        with torch.no_grad(), autocast(device):
            self.tables = [e.tower.table().float() for e in model.experts.values()]
            chunks = [[s[:, -1].float() for s in model.states_from(chunk.to(device), self.tables)]
                      for chunk in inputs.split(SPREAD_CHUNK)]
        self.states = [torch.cat(parts) for parts in zip(*chunks)]
        self.kept: list[torch.Tensor] | None = None
        if len(self.tables) * len(inputs) * len(self) * 4 <= budget:
            self.kept = [torch.empty(len(inputs), len(self), device=device) for _ in self.tables]
            for rows in torch.arange(len(inputs), device=device).split(SPREAD_CHUNK):
                for kept, logits in zip(self.kept, self._products(rows)):
                    kept[rows] = logits

    def __len__(self) -> int:
        return self.tables[0].shape[0]  # N+1

    def _products(self, rows: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), autocast(rows.device):
            return [(s[rows] @ t.T).float() for s, t in zip(self.states, self.tables)]

    def logits(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Each expert's [len(rows), N+1] logits of every item for the users `rows`."""
        return [k[rows] for k in self.kept] if self.kept is not None else self._products(rows)

    def logits_at(self, rows: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        """Each expert's [len(rows), K] logits of the items [len(rows), K] for the users `rows`."""
        if self.kept is not None:
            return [k[rows[:, None], items] for k in self.kept]
        return [torch.einsum("pd,pkd->pk", s[rows], t[items]) for s, t in zip(self.states, self.tables)]

    def combined(self, rows: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """[len(rows), N+1] sum_e coefficients[i, e] * logit_e(u, i) (a linear fusion's scores), without gradient."""
        with torch.no_grad():
            if self.kept is None:
                return torch.cat([s[rows] for s in self.states], -1) @ folded(self.tables, coefficients).T
            out = self.kept[0][rows] * coefficients[:, 0]
            for e, k in enumerate(self.kept[1:], 1):
                out.addcmul_(k[rows], coefficients[:, e])
            return out

    def ranks(self, rows: torch.Tensor, coefficients: torch.Tensor, targets: torch.Tensor,
              history: torch.Tensor) -> torch.Tensor:
        """`target_ranks` of a linear fusion's scores for the users `rows`."""
        if self.kept is not None:
            return target_ranks(self.combined(rows, coefficients), targets, history)
        return linear_target_ranks(torch.cat([s[rows] for s in self.states], -1), folded(self.tables, coefficients),
                                   targets, history, item_block(rows.device, len(rows)))


class HeldOutObjective(Objective):
    """Cross-entropy of the fused scores on held-out targets (`rival_softmax`); the experts stay as they are.

    A row is a user's validation input and target (the users `fit_rows` of `split`); the
    items before the target are excluded from the softmax as evaluation excludes them
    from the ranking, and a target that is one of them (a repeat, never a hit) is left
    out. The epoch is chosen on the users `select_rows`. Both read the experts' logits
    from `experts` (`FrozenExperts` of `split`'s users). With a linear fusion and a number
    of rivals, only the target's and its rivals' logits need a gradient: every item is
    scored without one, to find the rivals, and those few again with it.
    """

    def __init__(self, model: PadModel, experts: FrozenExperts, split: EvalSplit, fit_rows: torch.Tensor,
                 select_rows: torch.Tensor):
        self.experts, self.users, self.select = experts, fit_rows, select_rows
        self.rows = torch.cat([split.inputs[fit_rows], split.targets[fit_rows, None]], 1)
        self.history = split.history[fit_rows]
        self.frozen = tuple(model.experts.values())

    def loss(self, model: PadModel, idx: torch.Tensor, batch: torch.Tensor, cfg: TrainConfig,
             gen: torch.Generator) -> torch.Tensor | None:
        fusion, targets = model.fusion, batch[:, -1]
        seen = torch.zeros(len(idx), len(self.experts), dtype=torch.bool, device=batch.device)
        seen.scatter_(1, self.history[idx].to(batch.device), True)
        seen[:, 0] = True
        fresh = ~seen.gather(1, targets[:, None]).squeeze(1)
        if not fresh.any():
            return None
        rows, targets, seen = self.users[idx].to(batch.device)[fresh], targets[fresh], seen[fresh]
        rivals = cfg.fusion_negatives
        part = fusion.item_part(None, [])
        coefficients = fusion.coefficients(part)
        if coefficients is None or not 0 < rivals < len(self.experts) - 1:  # every logit needs its gradient
            scores = fusion(self.experts.logits(rows), part, all_items=True).float()
            return rival_softmax(scores.masked_fill(seen, float("-inf")), targets, rivals)
        every = self.experts.combined(rows, coefficients).masked_fill(seen, float("-inf"))
        picks = rival_picks(every, targets, rivals)
        out = every.gather(1, picks).isneginf()  # history and padding, when fewer rivals are left
        scores = fusion(self.experts.logits_at(rows, picks), fusion.item_part(picks, []), all_items=False)
        return F.cross_entropy(scores.float().masked_fill(out, float("-inf")), torch.zeros_like(targets))

    def ranks(self, model: PadModel, valid: EvalSplit, cfg: TrainConfig, device: torch.device,
              log=None) -> np.ndarray:
        """`rank_split`'s ranks of `valid` — the users `select_rows` — from the kept logits."""
        if len(valid.targets) != len(self.select):
            raise ValueError(f"validation split of {len(valid.targets)} users; this fit chooses on {len(self.select)}")
        model.eval()
        fusion, ranks = model.fusion, []
        with torch.no_grad():
            part = fusion.item_part(None, [])
            coefficients = fusion.coefficients(part)
            chunk = max(1, min(cfg.eval_batch, SCORE_BUDGET // (len(self.experts) * len(self.experts.tables))))
            for pos in torch.arange(len(self.select)).split(chunk):
                rows = self.select[pos].to(device)
                targets, history = valid.targets[pos].to(device), valid.history[pos].to(device)
                if coefficients is None:
                    scores = fusion(self.experts.logits(rows), part, all_items=True)
                    ranks.append(target_ranks(scores, targets, history).cpu())
                else:
                    ranks.append(self.experts.ranks(rows, coefficients, targets, history).cpu())
        return torch.cat(ranks).numpy()


def rival_picks(scores: torch.Tensor, targets: torch.Tensor, rivals: int) -> torch.Tensor:
    """[P, 1 + rivals] item indices: each row's target, then its `rivals` best-scored other items."""
    best = scores.scatter(1, targets[:, None], float("-inf")).topk(rivals, 1).indices
    return torch.cat([targets[:, None], best], 1)


def rival_softmax(scores: torch.Tensor, targets: torch.Tensor, rivals: int) -> torch.Tensor:
    """Cross-entropy of each target against its `rivals` best-scored other items (0 = against every item).

    The full softmax rewards raising a target wherever it ranks; against its closest
    rivals only, a target gains by entering the top of the list, which is what
    nDCG@10 counts.
    """
    if not rivals or rivals >= scores.shape[1] - 1:
        return F.cross_entropy(scores, targets)
    return F.cross_entropy(scores.gather(1, rival_picks(scores, targets, rivals)), torch.zeros_like(targets))


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
    chosen = users.sort().values
    split = data.valid.subset(chosen)
    experts = FrozenExperts(model, split.inputs, use_device(cfg))
    # each half's positions in `split`
    halves = [torch.searchsorted(chosen, half.sort().values) for half in (users[: len(users) // 2],
                                                                          users[len(users) // 2 :])]
    fusion, start = model.fusion, copy.deepcopy(model.fusion.state_dict())
    fits, results = [], []
    for fold, (fit_rows, select_rows) in enumerate((halves, halves[::-1])):
        log(f" fold {fold + 1}/2: fitting the {cfg.fusion} fusion on the validation targets of {len(fit_rows):,} "
            f"users, choosing its epoch on the other {len(select_rows):,}")
        fusion.load_state_dict(start)
        folder = work / f"fold{fold + 1}"
        folder.mkdir(exist_ok=True)
        results.append(fit(model, HeldOutObjective(model, experts, split, fit_rows, select_rows),
                           split.subset(select_rows), dataclasses.replace(cfg, lr=cfg.fusion_lr), folder, log))
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
    name="pad", title="PAD", summary="pre-train, align (L_REC + MK-MMD), disentangle (five experts, "
    "frequency-aware fusion)", stages=(PRETRAIN, ALIGN, FINETUNE),
))

register(ModelSpec(
    name="smem", title="SMEM", summary="PAD without alignment: shared (ID + text) and modality-specific experts",
    stages=(PRETRAIN, dataclasses.replace(ALIGN, extra=None),
            dataclasses.replace(FINETUNE, defaults={**FINETUNE.defaults, "experts": PAPER_EXPERTS})),
))
