"""Phase 3's fusion against a second, direct fit: a search of per-bucket expert weights on nDCG@10 itself.

Phase 3 fits per-bucket expert weights (`fusion=bucket`) with cross-entropy
(each held-out target against its `fusion_negatives` best-scored rivals). How
good is that fit of the family? This bench fits the same family a second way: a coordinate search of every
bucket's coefficient on each expert's logit (score(u, i) = sum_e c[b(i), e] *
s_e(u, i)), maximising nDCG@10 itself on the validation targets of one half of the
users, scored on the other half, and the other way round. It reports, on the
held-out halves:

- equal: the same experts at equal weights, each at unit spread (the fusion's
  start; for PAD, "PAD, fused, tuned expert trained");
- learned: the fusion phase 3 fitted (it saw those targets in its own
  cross-fitting, so it is slightly favoured);
- searched: the coordinate search (its in-sample score beside it: the gap is
  how much it fits noise);
- fitted, in sample: phase 3's own fit (`HeldOutObjective`, from the equal-weight
  start) on the very users it is scored on, its epoch chosen on them too — what
  phase 3's fit of this family reaches when the targets it is judged on are its
  training data, an optimistic ceiling: no amount of other held-out data
  should let the shipped fit score above it.

The search is greedy over a coarse grid, a second opinion rather than a bound. It
reads the phase-3 runs of bench/quality.py (same --work): PAD's (`--models pad`, five
experts) and the four-expert one (`four`), and holds every validation score of the
experts in memory (5 x [users, items] float32: 2.1 GB on Prime Pantry): a diagnostic
for catalogues of that size.

    PAD_DATA_HOME=../shared/datasets python bench/fusion_search.py [--datasets ...] [--losses bce ce]
        [--seeds 0 1 2] [--models pad four] [--work runs/bench-quality]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, TITLES, machine, mean_std, write_section
from padcore.batches import EvalSplit, split_tensors
from padcore.checkpoint import load_model
from padcore.config import TrainConfig
from padcore.dataset import load_dataset
from padcore.metrics import hit_ndcg, target_ranks
from padcore.models.pad import FrozenExperts, HeldOutObjective
from padcore.text import load_text
from padcore.trainer import fit

KEYS = ("equal", "learned", "searched", "searched, in sample", "fitted, in sample")
MULTIPLIERS = (0.0, 0.5, 0.75, 1.33, 2.0)  # tried on one coefficient at a time
CHUNK = 1024


def frozen(model, split) -> FrozenExperts:
    """The experts' logits of every item for every user's validation input, kept whole whatever their size."""
    return FrozenExperts(model, split.inputs, torch.device("cpu"), budget=2**62)


def ndcg(scores: torch.Tensor, coef: torch.Tensor, buckets: torch.Tensor, split, rows: torch.Tensor) -> float:
    """nDCG@10 (percent) of the fused scores sum_e coef[b(i), e] * s_e(u, i) over the users `rows`."""
    w = coef[buckets]  # [items + 1, experts]
    ranks = torch.cat([target_ranks(sum(w[:, e] * s[part] for e, s in enumerate(scores)), split.targets[part],
                                    split.history[part]) for part in rows.split(CHUNK)])
    return 100 * float(hit_ndcg(ranks.numpy(), 10)[1].mean())


def search(scores, coef, buckets, split, rows, sweeps: int) -> tuple[torch.Tensor, float]:
    """Coordinate ascent of nDCG@10 on `rows`: each coefficient in turn times each multiplier, kept if better."""
    best = ndcg(scores, coef, buckets, split, rows)
    for _ in range(sweeps):
        for b in range(1, coef.shape[0]):
            for e in range(coef.shape[1]):
                for m in MULTIPLIERS:
                    trial = coef.clone()
                    trial[b, e] *= m
                    value = ndcg(scores, trial, buckets, split, rows)
                    if value > best + 1e-9:
                        best, coef = value, trial
    return coef, best


def coefficients(fusion) -> torch.Tensor:
    """[buckets + 1, experts] c[b, e] = what a bucket fusion multiplies expert e's logits by on bucket b."""
    with torch.no_grad():
        return fusion.coefficients(fusion.bucket_weights())


def fitted_in_sample(model, experts: FrozenExperts, cfg: TrainConfig, split: EvalSplit, rows: torch.Tensor
                     ) -> tuple[torch.Tensor, float]:
    """Phase 3's fusion fitted on the targets of `rows` and early-stopped on the same rows: its coefficients and
    its best nDCG@10 there (`experts`: the model's, for `split`'s users). The model's fusion is left as it was."""
    start = copy.deepcopy(model.fusion.state_dict())
    with tempfile.TemporaryDirectory() as work:
        result = fit(model, HeldOutObjective(model, experts, split, rows, rows), split.subset(rows),
                     dataclasses.replace(cfg, lr=cfg.fusion_lr), Path(work), log=lambda line: None)
    coef = coefficients(model.fusion)
    model.fusion.load_state_dict(start)
    return coef, max(h["valid_ndcg@10"] for h in result.history)


MODELS = {"pad": "tuned", "four": "bucket"}  # -> bench/quality.py's phase-3 folder (finetune-<name>)
TITLE = {"pad": "five (PAD)", "four": "four"}


def compare(work: Path, name: str, loss: str, seed: int, sweeps: int, model_name: str) -> dict[str, float]:
    root = work / name
    ds = load_dataset(root / "dataset")
    text = load_text(root / "text", ds)
    run = root / loss / f"seed{seed}" / f"finetune-{MODELS[model_name]}"
    model = load_model(run, text)
    learned = coefficients(model.fusion)
    model.fusion.restart()  # the experts, and the fusion at phase 3's start
    cfg = TrainConfig.from_options(json.loads((run / "config.json").read_text())["config"])
    split = split_tensors(ds, cfg.max_len).valid
    experts = frozen(model, split)
    scores = experts.kept
    buckets = model.fusion.buckets
    users = torch.randperm(len(split.targets), generator=torch.Generator().manual_seed(seed))
    halves = users[: len(users) // 2], users[len(users) // 2 :]
    equal = coefficients(model.fusion) * len(scores)  # equal weights, each expert at unit spread
    out: dict[str, list[float]] = {k: [] for k in KEYS}
    for fit_rows, held_out in (halves, halves[::-1]):
        coef, in_sample = search(scores, equal, buckets, split, fit_rows, sweeps)
        out["equal"].append(ndcg(scores, equal, buckets, split, held_out))
        out["learned"].append(ndcg(scores, learned, buckets, split, held_out))
        out["searched"].append(ndcg(scores, coef, buckets, split, held_out))
        out["searched, in sample"].append(in_sample)
        out["fitted, in sample"].append(ndcg(scores, fitted_in_sample(model, experts, cfg, split, held_out)[0], buckets,
                                             split, held_out))
    return {k: float(np.mean(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(TITLES), choices=list(TITLES))
    ap.add_argument("--losses", nargs="+", default=["bce", "ce"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sweeps", type=int, default=1, help="passes of the coordinate search")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                    help="pad: PAD's phase 3 (five experts); four: without the tuned expert")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--no-write", action="store_true", help="print the table without updating bench/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["| dataset, loss, experts | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for name in args.datasets:
        for loss in args.losses:
            for model in args.models:
                t0 = time.time()
                runs = [compare(args.work, name, loss, s, args.sweeps, model) for s in args.seeds]
                lines.append(f"| {TITLES[name]}, {loss.upper()}, {TITLE[model]} | "
                             + " | ".join(mean_std([r[k] for r in runs]) for k in KEYS) + " |")
                print(lines[-1], f"({time.time() - t0:.0f} s)", flush=True)
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        seeds = ", ".join(map(str, args.seeds))
        datasets = "" if args.datasets == list(TITLES) else " --datasets " + " ".join(args.datasets)
        datasets += "" if args.losses == ["bce", "ce"] else " --losses " + " ".join(args.losses)
        write_section(ROOT / "RESULTS.md", "## quality: the fusion searched", (
            "## quality: the fusion searched\n\nValidation nDCG@10 (percent) on held-out halves of the users, "
            f"mean ± sample std over seeds {seeds}, of PAD's experts fused per frequency bucket: at equal weights, "
            "as phase 3 fitted them, as a coordinate search of nDCG@10 itself fitted them on the other half "
            "(in-sample score beside it), and as phase 3's own fit reaches on the scored half itself, its epoch "
            f"chosen there too (in sample: a ceiling for the fit). Machine: {machine()}. Command: "
            f"`PAD_DATA_HOME=../shared/datasets python bench/fusion_search.py{datasets} "
            f"--work <bench/quality.py's work>`.\n\n{table}\n"))


if __name__ == "__main__":
    main()
