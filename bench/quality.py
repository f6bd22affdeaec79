"""Quality benchmark: PAD against the controls that could explain its gain, on two Amazon datasets.

For each dataset, loss (the paper's BCE and full-softmax CE) and seed s, PAD is
trained (pretrain -> align -> finetune), and beside it, from the same artifacts
and evaluated with the same code:

- SASRec: PAD's phase-1 model;
- SASRec x3: the equal-weight average of three ID models (seeds s, s+3, s+6) —
  fused exactly as PAD's experts are before phase 3 learns anything;
- alignment expert: PAD's phase-2 model alone;
- 2 SASRecs + alignment expert: PAD's ID expert, one more ID model (seed s+3) and
  the alignment expert, equal weights — PAD with its LLM expert and its learned
  fusion replaced by one more ID model;
- text similarity: PAD's text-similarity expert alone (no training: an item's text
  cosine to the user's recent items);
- PAD, fused: PAD's experts as phases 1 and 2 and the text leave them (ID, alignment,
  LLM, text similarity) at equal weights, each at unit logit spread: phase 3's starting
  point (its tuned expert starts as the similarity expert and is not counted twice);
- PAD, fused, tuned expert trained: PAD's five experts, the tuned one as phase 3 trained
  it, back at equal weights (PAD's fitted fusion restarted): what the gate adds;
- PAD, paper recipe: the paper's three experts, phase 3 as the paper trains it
  (eq. 11's gate trained jointly with the experts on the training targets);
- PAD, paper's three experts: pad's phase 3 over the paper's three experts;
- SASRec + text similarity: pad's phase 3 over the ID and text-similarity experts
  only — what PAD's alignment and LLM experts add beyond an ID model and text
  similarity, fused the same way; fitted at both fusion rates (0.05 and 0.01),
  the row keeping the one its held-out validation prefers (the control gets a
  choice PAD does not);
- SASRec + text similarity + tuned similarity: the same with the tuned expert;
- PAD, four experts: pad's phase 3 without the tuned expert (its default until the
  tuned expert joined);
- PAD: phase 3 as pad trains it (five experts; the tuned expert trained alone, then
  the fusion fitted on held-out interactions, each target against its 100
  best-scored rivals).

Every variant names its experts, so a default that changes never changes what a
kept artifact stands for. Every trained artifact and every evaluation is kept
under --work, so a rerun resumes; several processes may share --work (e.g. one
per loss). The tables go to bench/RESULTS.md, one section per dataset and loss
("quality: <dataset>, <LOSS>").

    PAD_DATA_HOME=../shared/datasets python bench/quality.py [--datasets prime_pantry amazon_scientific]
        [--losses bce ce] [--seeds 0 1 2] [--work runs/bench-quality] [--set threads=1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import (FIVE, FOUR, ROOT, SOURCES, TITLES, cached, cells, commit, machine, mean_std, parse_set, prepare,
                    trained, write_section)
from padcore import steps
from padcore.config import PAPER_EXPERTS
from padcore.dataset import load_dataset

ROWS = ("SASRec", "SASRec x3", "alignment expert", "2 SASRecs + alignment expert", "text similarity", "PAD, fused",
        "PAD, fused, tuned expert trained", "PAD, paper recipe", "PAD, paper's three experts",
        "SASRec + text similarity", "SASRec + text similarity + tuned similarity", "PAD, four experts", "PAD")
ROW_NOTE = ("SASRec x3 = the equal-weight logit average of the ID models of seeds s, s+3, s+6; 2 SASRecs + "
            "alignment expert = PAD's ID expert, the seed s+3 ID model and PAD's alignment expert at equal weights; "
            "text similarity = PAD's text-similarity expert alone (no training); PAD, fused = PAD's ID, alignment, "
            "LLM and text-similarity experts at equal weights, each at unit logit spread (phase 3's starting point; "
            "the tuned expert starts as the similarity expert); PAD, fused, tuned expert trained = PAD's five "
            "experts, the tuned one trained, back at equal weights (what the gate adds); PAD, paper recipe = the "
            "paper's three experts, phase 3 as the paper trains it (`fusion=paper experts=id,align,llm`); PAD, "
            "paper's three experts = pad's phase 3 over them (`experts=id,align,llm`); SASRec + text similarity = "
            "pad's phase 3 over the ID and text-similarity experts only (`experts=id,sim`), at the fusion rate "
            "(0.05 or 0.01) its held-out validation prefers; SASRec + text similarity + tuned similarity = "
            "`experts=id,sim,tuned`; PAD, four experts = `experts=id,align,llm,sim` (the default before the tuned "
            "expert joined); PAD = phase 3 as pad trains it (five experts, `fusion=bucket`: the tuned expert "
            "trained alone, then the fusion fitted on held-out targets, each against its 100 best-scored rivals).")
CONTROL_RATES = (0.05, 0.01)  # "SASRec + text similarity" is fitted at both; validation picks
EXTRA_SEEDS = (3, 6)  # the other ID models of seed s's controls are seeds s+3 and s+6


def run(work: Path, name: str, loss: str, seed: int, options: dict) -> dict[str, dict]:
    """Every row's metrics for one dataset, loss and seed."""
    from padcore.ensemble import evaluate, load_members
    from padcore.text import load_text

    dataset, text = prepare(work, name)
    base = work / name / loss
    run_dir = base / f"seed{seed}"
    phase1, phase2 = run_dir / "pretrain", run_dir / "align"
    trained(phase1, lambda out: steps.pretrain(dataset, out, seed=seed, loss=loss, **options))
    trained(phase2, lambda out: steps.align(dataset, text, phase1, out))
    variants = {"bucket": {"experts": FOUR}, "equal": {"fusion": "equal", "experts": FOUR}, "sim": {"experts": "sim"},
                "paper": {"fusion": "paper", "experts": PAPER_EXPERTS},
                "w-o-text-similarity-expert": {"experts": PAPER_EXPERTS},  # shared with bench/reproduce.py's Fig. 5(b)
                **{f"id-sim-{rate}": {"experts": "id,sim", "fusion_lr": rate} for rate in CONTROL_RATES},
                "tuned": {"experts": FIVE}, "id-sim-tuned": {"experts": "id,sim,tuned"}}
    for key, opts in variants.items():
        trained(run_dir / f"finetune-{key}", lambda out, o=opts: steps.finetune(dataset, text, phase1, phase2, out, **o))
    ids = {k: base / f"id-seed{seed + k}" for k in EXTRA_SEEDS}
    for k, folder in ids.items():
        trained(folder, lambda out, k=k: steps.pretrain(dataset, out, seed=seed + k, loss=loss, **options))
    ds = load_dataset(dataset)
    table = load_text(text, ds)

    def ensemble(folders) -> dict:
        return {"test": evaluate(load_members(folders, ds, table), ds), "members": [str(f) for f in folders]}

    def restarted(folder: Path) -> dict:
        """A fitted phase 3 with its fusion back at its start (equal weights, unit spreads)."""
        members = load_members([folder], ds, table)
        members.members[0].fusion.restart()
        return {"test": evaluate(members, ds), "model": str(folder)}

    def metrics(folder: Path) -> dict:
        return json.loads((folder / "metrics.json").read_text())

    return {
        "SASRec": metrics(phase1),
        "SASRec x3": cached(run_dir / "sasrec-x3.json", lambda: ensemble([phase1, ids[3], ids[6]])),
        "alignment expert": metrics(phase2),
        "2 SASRecs + alignment expert": cached(run_dir / "sasrec-x2-align.json",
                                               lambda: ensemble([phase1, ids[3], phase2])),
        "text similarity": metrics(run_dir / "finetune-sim"),
        "PAD, fused": metrics(run_dir / "finetune-equal"),
        "PAD, fused, tuned expert trained": cached(run_dir / "pad-restarted.json",
                                                   lambda: restarted(run_dir / "finetune-tuned")),
        "PAD, paper recipe": metrics(run_dir / "finetune-paper"),
        "PAD, paper's three experts": metrics(run_dir / "finetune-w-o-text-similarity-expert"),
        "SASRec + text similarity": metrics(max((run_dir / f"finetune-id-sim-{rate}" for rate in CONTROL_RATES),
                                                key=held_out)),
        "SASRec + text similarity + tuned similarity": metrics(run_dir / "finetune-id-sim-tuned"),
        "PAD, four experts": metrics(run_dir / "finetune-bucket"),
        "PAD": metrics(run_dir / "finetune-tuned"),
    }


def held_out(folder: Path) -> float:
    """A phase-3 fit's validation score: the mean of its cross-fitting folds' best held-out nDCG@10."""
    history = json.loads((folder / "metrics.json").read_text())["history"]
    return float(np.mean([max(h["valid_ndcg@10"] for h in history if h["fold"] == fold) for fold in (1, 2)]))


def table(runs: dict[int, dict[str, dict]]) -> str:
    """One dataset and loss: every row, mean ± std over the seeds; ratios against SASRec x3."""
    seeds = sorted(runs)
    keys = ("hr@10", "ndcg@10", "warm hr@10", "median hr@10", "cold hr@10")
    head = "| model | HR@10 | nDCG@10 | warm HR@10 | median HR@10 | cold HR@10 | × SASRec x3 (HR / nDCG / cold) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    ref = {k: np.mean([cells(runs[s]["SASRec x3"])[k] for s in seeds]) for k in keys}
    for row in ROWS:
        vals = {k: [cells(runs[s][row])[k] for s in seeds] for k in keys}
        ratio = " / ".join(f"{np.mean(vals[k]) / ref[k]:.2f}" for k in ("hr@10", "ndcg@10", "cold hr@10"))
        bold = "**" if row == "PAD" else ""
        lines.append(f"| {bold}{row}{bold} | " + " | ".join(mean_std(vals[k]) for k in keys) + f" | {ratio} |")
    return "\n".join(lines)


def phase_table(runs: dict[int, dict[str, dict]]) -> str:
    """PAD's phases per seed: epochs (best), seconds per epoch, wall seconds; phase 3's learned weights."""
    lines = ["| seed | pretrain | align | finetune | total s | experts' shares of the fused score, bucket 1 → last |",
             "|---|---|---|---|---|---|"]
    for seed in sorted(runs):
        r = runs[seed]
        phases = [r["SASRec"], r["alignment expert"], r["PAD"]]
        cols = [f"{m['epochs']} ep. (best {m['best_epoch']}), {m['seconds_per_epoch']:.1f} s/ep., "
                f"{m['wall_seconds']:.0f} s" for m in phases]
        tuned = r["PAD"].get("tuned_expert")
        if tuned:
            cols[-1] += f" (the tuned expert: {tuned['epochs']} ep., best {tuned['best_epoch']})"
        fusion = r["PAD"].get("fusion", {})
        w = fusion.get("weights", [])[1:]
        weights = f"{' / '.join(fusion['experts'])}: {_w(w[0])} → {_w(w[-1])}" if w else "—"
        lines.append(f"| {seed} | " + " | ".join(cols) + f" | {sum(m['wall_seconds'] for m in phases):.0f} | {weights} |")
    return "\n".join(lines)


def _w(row: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in row)


def pooled_std(a: list[float], b: list[float]) -> float:
    return float(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)) if len(a) > 1 else 0.0


def targets(title: str, runs: dict[int, dict[str, dict]]) -> str:
    """The issue's targets, measured, for one dataset and loss (`title`)."""
    lines = ["| dataset, loss | PAD vs PAD, fused: HR / nDCG gap (2 × pooled std) | PAD vs PAD, fused, tuned expert "
             "trained (the gate's share): HR / nDCG gap | PAD / SASRec x3: HR (cold) | PAD vs 2 SASRecs + align: HR "
             "gap | PAD vs SASRec + text similarity + tuned similarity: HR / nDCG gap | PAD − PAD, fused, HR per seed "
             "| phase-3 best epochs: fusion (both folds); tuned expert |", "|---|---|---|---|---|---|---|---|"]
    seeds = sorted(runs)
    v = {row: {k: [cells(runs[s][row])[k] for s in seeds] for k in ("hr@10", "ndcg@10", "cold hr@10")}
         for row in ROWS}

    def gap(control: str, keys=("hr@10", "ndcg@10")) -> str:
        return " / ".join(f"{np.mean(v['PAD'][k]) - np.mean(v[control][k]):+.2f} "
                          f"({2 * pooled_std(v['PAD'][k], v[control][k]):.2f})" for k in keys)

    ratio = f"{np.mean(v['PAD']['hr@10']) / np.mean(v['SASRec x3']['hr@10']):.2f} " \
            f"({np.mean(v['PAD']['cold hr@10']) / np.mean(v['SASRec x3']['cold hr@10']):.2f})"
    paired = ", ".join(f"{a - b:+.2f}" for a, b in zip(v["PAD"]["hr@10"], v["PAD, fused"]["hr@10"]))
    best = ", ".join("/".join(map(str, runs[s]["PAD"].get("fusion", {}).get("best_epochs", [])))
                     + f"; {runs[s]['PAD'].get('tuned_expert', {}).get('best_epoch', '—')}" for s in seeds)
    lines.append(f"| {title} | {gap('PAD, fused')} | {gap('PAD, fused, tuned expert trained')} "
                 f"| {ratio} | {gap('2 SASRecs + alignment expert', ('hr@10',))} "
                 f"| {gap('SASRec + text similarity + tuned similarity')} | {paired} | {best} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--losses", nargs="+", default=["bce", "ce"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training option for every run")
    ap.add_argument("--no-write", action="store_true", help="print the tables without updating bench/RESULTS.md")
    ap.add_argument("--note", default="", help="a sentence for the section's header, e.g. what else shared the machine")
    args = ap.parse_args()
    options = parse_set(args.set)

    for name in args.datasets:
        for loss in args.losses:
            runs = {seed: run(args.work, name, loss, seed, options) for seed in args.seeds}
            title = f"{TITLES[name]}, {loss.upper()}"
            text = "\n".join([table(runs), "", "PAD's phases:", "", phase_table(runs), "", "Targets (gaps are PAD minus "
                              "the control, mean over the seeds, with twice the pooled seed standard deviation in "
                              "brackets, the issue's test; the seeds' spread includes what every row shares, so the "
                              "per-seed gaps say whether a gain is consistent; phase-3 best epochs are per seed: each "
                              "cross-fitting fold's, then the tuned expert's own fit's):", "",
                              targets(title, runs), ""])
            print(f"### {title}\n\n{text}")
            if not args.no_write:
                heading = f"## quality: {title}"
                section = (f"{heading}\n\n`bench/quality.py`: PAD against the controls that could explain its gain, "
                           f"same protocol, seeds and ranking code. {ROW_NOTE} Test split, percent, mean ± sample std "
                           f"over seeds {', '.join(map(str, args.seeds))}; MiniLM text (offline). Commit {commit()}. "
                           f"Machine: {machine()}.{' ' + args.note if args.note else ''} Command: "
                           f"`PAD_DATA_HOME=../shared/datasets python bench/quality.py --datasets {name} --losses {loss}"
                           f"{''.join(' --set ' + s for s in args.set)}`.\n\n{text}\n")
                write_section(ROOT / "RESULTS.md", heading, section)


if __name__ == "__main__":
    main()
