"""The paper's comparisons, reproduced with pad on two Amazon datasets -> bench/REPRODUCTION.md.

- Table 2: SASRec, Hybrid, MoRec, CTRL, MAKE, DisCo, SMEM, LLM-ESR, text similarity
  (PAD's similarity expert alone, untrained) and PAD, with the paper's BCE loss and
  full-softmax CE; PAD's * = paired t-test over the seeds against the best other
  text model, p < 0.05 (as the paper marks it).
- Table 3: GRU4Rec and Caser (and SASRec) with and without PAD (BCE).
- Fig. 3: how well each model's ID and text tables separate the item pairs nearest
  and farthest in the phase-1 ID space, on cold and warm target items.
- Fig. 4: anchored, non-anchored, frozen alignment and none (SMEM) (BCE).
- Fig. 5(a): the alignment kernel (Gaussian MK-MMD, Laplacian, linear, cosine, InfoNCE) (BCE).
- Fig. 5(b): each expert removed, one expert alone, no gate (BCE).

Every run is kept under --work, shared with bench/quality.py (the same SASRec and
PAD runs), so a rerun resumes and finished rows are kept. Several processes may
share --work (e.g. one per dataset).

    PAD_DATA_HOME=../shared/datasets python bench/reproduce.py [--datasets ...] [--seeds 0 1 2]
        [--only table2 table3 fig3 fig4 fig5a fig5b] [--work runs/bench-quality]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from common import FIVE, FOUR, GROUPS, ROOT, SOURCES, TITLES, cells, machine, mean_std, parse_set, prepare, trained
from padcore import steps
from padcore.backbones import TITLES as BACKBONE_TITLES
from padcore.registry import MODELS

BASELINES = ("hybrid", "morec", "ctrl", "make", "disco", "smem", "llmesr")
TITLE = {"id": "SASRec", "hybrid": "Hybrid", "morec": "MoRec", "ctrl": "CTRL", "make": "MAKE", "disco": "DisCo",
         "smem": "SMEM", "llmesr": "LLM-ESR", "sim": "text similarity (no training)", "pad": "PAD"}
# the paper's Table 2 and 3 on Prime Pantry (HR@10, nDCG@10), BCE
PAPER = {"id": (2.6338, 1.2926), "hybrid": (3.1000, 1.5606), "morec": (3.1699, 1.6013), "ctrl": (2.8048, 1.3700),
         "make": (3.3408, 1.6379), "disco": (2.8358, 1.3451), "smem": (3.4341, 1.7440), "pad": (3.8303, 1.9104)}
PAPER_T3 = {"gru4rec": ((1.7248, 0.8227), (2.5484, 1.2307)), "caser": ((0.6526, 0.4136), (1.4063, 0.5507))}
ALIGN_MODES = ("anchored", "non-anchored", "frozen")
KERNELS = ("gaussian", "laplacian", "linear", "cosine", "infonce")
ABLATIONS = {  # Fig. 5(b): label -> phase-3 options (pad's PAD has two experts of its own: text and tuned similarity)
    "PAD": {}, "w/o ID expert": {"experts": "align,llm,sim,tuned"},
    "w/o alignment expert": {"experts": "id,llm,sim,tuned"}, "w/o LLM expert": {"experts": "id,align,sim,tuned"},
    "w/o tuned-similarity expert": {"experts": FOUR},
    "w/o both similarity experts": {"experts": "id,align,llm"},
    "ID expert only": {"experts": "id"}, "alignment expert only": {"experts": "align"},
    "LLM expert only": {"experts": "llm"}, "text-similarity expert only": {"experts": "sim"},
    "tuned-similarity expert only": {"experts": "tuned"}, "no gate (one weight vector)": {"fusion": "global"},
}
# phase-3 runs bench/quality.py also trains, under its names (experts -> folder label)
SHARED = {FIVE: "tuned", FOUR: "bucket", "id,align,llm": "w-o-text-similarity-expert", "sim": "sim"}


def phase3_label(options: dict) -> str:
    """The folder label of a phase-3 run: by what it holds (its experts and fusion), quality's name where shared."""
    experts = options.get("experts", FIVE)
    if set(options) <= {"experts"} and experts in SHARED:
        return SHARED[experts]
    return slug(experts + "-" + options.get("fusion", "bucket"))


class Runs:
    """One dataset's runs under work/<dataset>/<loss>/seed<s>/ (the layout bench/quality.py shares)."""

    def __init__(self, work: Path, name: str, options: dict):
        self.name, self.options = name, options
        self.root = work / name
        self.dataset, self.text = prepare(work, name)

    def folder(self, loss: str, seed: int, *parts: str) -> Path:
        return self.root.joinpath(loss, f"seed{seed}", *parts)

    def pretrain(self, loss: str, seed: int, backbone: str = "sasrec") -> Path:
        out = self.folder(loss, seed, *([] if backbone == "sasrec" else [f"backbone-{backbone}"]), "pretrain")
        trained(out, lambda o: steps.pretrain(self.dataset, o, seed=seed, loss=loss, backbone=backbone,
                                              **self.options))
        return out

    def align(self, loss: str, seed: int, backbone: str = "sasrec", **opts) -> Path:
        tag = "-".join(f"{v}" for v in opts.values())
        out = self.pretrain(loss, seed, backbone).parent / ("align" + (f"-{tag}" if tag else ""))
        trained(out, lambda o: steps.align(self.dataset, self.text, self.pretrain(loss, seed, backbone), o, **opts))
        return out

    def pad(self, loss: str, seed: int, backbone: str = "sasrec", align: dict | None = None, **finetune) -> Path:
        """PAD's phase 3 (its five experts unless `experts` says) on the given alignment variant."""
        phase2 = self.align(loss, seed, backbone, **(align or {}))
        label = phase3_label(finetune)
        suffix = label if phase2.name == "align" else f"{label}-{phase2.name}"
        out = phase2.parent / f"finetune-{suffix}"
        trained(out, lambda o: steps.finetune(self.dataset, self.text, self.pretrain(loss, seed, backbone), phase2, o,
                                              **{"experts": FIVE, **finetune}))
        return out

    def model(self, name: str, loss: str, seed: int) -> Path:
        """A registered model's run: SASRec and PAD are the shared runs; Hybrid, DisCo and SMEM reuse phase 1."""
        if name == "id":
            return self.pretrain(loss, seed)
        if name == "pad":
            return self.pad(loss, seed)
        if name == "sim":  # shared with bench/quality.py's "text similarity" row
            return self.pad(loss, seed, experts="sim")
        out = self.folder(loss, seed, name)
        starts_from_ids = "pretrain" in (s.name for s in MODELS[name].stages)
        reuse = {"pretrain": self.pretrain(loss, seed)} if starts_from_ids else {}
        trained(out, lambda o: steps.train(name, self.dataset, self.text, o, reuse=reuse, seed=seed, loss=loss,
                                           **self.options))
        return out


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def wall(folder: Path, chain: bool = True) -> float:
    """Seconds to train a model artifact and (with `chain`) every earlier stage it was built on, each once.

    A run resumed after an interruption reports the wall time of its last segment only; its epochs'
    own seconds (kept across resumes) are then the better count.
    """
    stages, todo = set(), [folder.resolve()]
    while todo:
        f = todo.pop()
        if f in stages:
            continue
        stages.add(f)
        if chain:
            parents = json.loads((f / "meta.json").read_text()).get("parents", {}).values()
            todo += [(Path(p) if Path(p).is_absolute() else f / p).resolve() for p in parents]
    total = 0.0
    for f in stages:
        m = metrics(f)
        total += max(m["wall_seconds"], sum(h.get("seconds", 0.0) for h in m.get("history", [])))
    return total


def significance(ours: list[float], best: list[float]) -> str:
    """'*' when ours beats the best other model by a paired t-test over the seeds, p < 0.05."""
    if len(ours) < 2 or np.allclose(ours, best):
        return ""
    t, p = stats.ttest_rel(ours, best)
    return "*" if t > 0 and p < 0.05 else ""


def table2(runs: dict[str, Runs], seeds: list[int], losses: list[str], baselines: list[str]) -> str:
    rivals = (*baselines, "sim")  # PAD's text-similarity expert alone: the simplest text model
    models = ("id", *rivals, "pad")
    parts = []
    for loss in losses:
        head = "| model | " + " | ".join(f"{TITLES[n]} HR@10 | {TITLES[n]} nDCG@10" for n in runs) + \
               " | wall s (per seed, " + " / ".join(TITLES[n] for n in runs) + ") |"
        lines = [f"#### {loss.upper()}", "", head, "|---" * (2 * len(runs) + 2) + "|"]
        vals = {(m, n): [cells(metrics(r.model(m, loss, s))) for s in seeds] for m in models for n, r in runs.items()}
        # the text-similarity expert trains nothing: its own step only, not the PAD phases it is built beside
        walls = {(m, n): np.mean([wall(r.model(m, loss, s), chain=m != "sim") for s in seeds])
                 for m in models for n, r in runs.items()}
        for m in models:
            row = [f"**{TITLE[m]}**" if m == "pad" else TITLE[m]]
            for n in runs:
                for k in ("hr@10", "ndcg@10"):
                    ours = [c[k] for c in vals[(m, n)]]
                    cell = mean_std(ours)
                    if m == "pad":
                        best = max(rivals, key=lambda b: np.mean([c[k] for c in vals[(b, n)]]))
                        cell += significance(ours, [c[k] for c in vals[(best, n)]])
                    rank = sorted(models, key=lambda x: -np.mean([c[k] for c in vals[(x, n)]]))
                    row.append(f"**{cell}**" if rank[0] == m else f"<u>{cell}</u>" if rank[1] == m else cell)
            row.append(" / ".join(f"{walls[(m, n)]:.0f}" for n in runs))
            lines.append("| " + " | ".join(row) + " |")
        groups = ["", f"Per target-item group, HR@10 ({loss.upper()}, warm / median / cold), and the epoch that "
                  "validation kept in each seed's last stage (0 = its starting point, i.e. that stage learned "
                  "nothing kept):", "", "| model | " + " | ".join(TITLES[n] for n in runs) + " | best epochs ("
                  + " / ".join(TITLES[n] for n in runs) + ") |", "|---" * (len(runs) + 2) + "|"]
        for m in models:
            epochs = " / ".join(",".join(str(metrics(r.model(m, loss, s))["best_epoch"]) for s in seeds)
                                for r in runs.values())
            groups.append(f"| {TITLE[m]} | " + " | ".join(
                " / ".join(f"{np.mean([c[f'{g} hr@10'] for c in vals[(m, n)]]):.2f}" for g in GROUPS) for n in runs)
                + f" | {epochs} |")
        parts += lines + groups + [""]
    if "prime_pantry" in runs and "bce" in losses:
        parts += ["The paper's Table 2 on Prime Pantry (BCE, LLM2Vec text), HR@10 / nDCG@10: " + "; ".join(
            f"{TITLE[m]} {hr:.2f} / {nd:.2f}" for m, (hr, nd) in PAPER.items()) + ". LLM-ESR is not in the paper. "
            "Where a text-aware baseline is not above SASRec here, bench/RESULTS.md (\"baselines below SASRec\", "
            "`bench/baselines.py`) measures why.", ""]
    return "\n".join(parts)


def table3(runs: dict[str, Runs], seeds: list[int]) -> str:
    lines = ["| backbone | dataset | origin HR@10 | origin nDCG@10 | +PAD HR@10 | +PAD nDCG@10 | Impr. HR / nDCG | "
             "paper (Prime Pantry) origin → +PAD HR@10 | wall s (per seed, origin / +PAD) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for backbone in ("sasrec", "gru4rec", "caser"):
        for n, r in runs.items():
            origin_dirs = [r.pretrain("bce", s, backbone) for s in seeds]
            pad_dirs = [r.pad("bce", s, backbone) for s in seeds]
            origin, pad = [cells(metrics(f)) for f in origin_dirs], [cells(metrics(f)) for f in pad_dirs]
            o = {k: np.mean([c[k] for c in origin]) for k in ("hr@10", "ndcg@10")}
            p = {k: np.mean([c[k] for c in pad]) for k in ("hr@10", "ndcg@10")}
            paper = PAPER_T3.get(backbone, (PAPER["id"], PAPER["pad"])) if n == "prime_pantry" else None
            lines.append(
                f"| {BACKBONE_TITLES[backbone]} | "
                f"{TITLES[n]} | {mean_std([c['hr@10'] for c in origin])} | {mean_std([c['ndcg@10'] for c in origin])} | "
                f"{mean_std([c['hr@10'] for c in pad])} | {mean_std([c['ndcg@10'] for c in pad])} | "
                f"{100 * (p['hr@10'] / o['hr@10'] - 1):+.1f}% / {100 * (p['ndcg@10'] / o['ndcg@10'] - 1):+.1f}% | "
                + (f"{paper[0][0]:.2f} → {paper[1][0]:.2f}" if paper else "") + " | "
                f"{np.mean([wall(f) for f in origin_dirs]):.0f} / {np.mean([wall(f) for f in pad_dirs]):.0f} |")
    return "\n".join(lines)


def fig3(runs: dict[str, Runs], seed: int, out: Path) -> str:
    """AUC of far vs near phase-1 ID pairs under each model's ID and text tables (seed `seed`, BCE)."""
    from padcore.analysis import AnalysisConfig, run_analysis
    from padcore.checkpoint import item_tables
    from padcore.dataset import load_dataset
    from padcore.kendall import behaviour_target_pairs
    from padcore.report import plot_pairs
    from padcore.text import load_text

    lines = ["| dataset | group | model: table | space | AUC | gap (d) |", "|---|---|---|---|---|---|"]
    for n, r in runs.items():
        ds = load_dataset(r.dataset)
        text = load_text(r.text, ds)
        tables = {"pretrain:id": item_tables(r.pretrain("bce", seed))["id"], "text": np.asarray(text, np.float32)}
        for m in ("smem", "ctrl", "pad"):
            folder = r.model(m, "bce", seed)
            for part, t in item_tables(folder, text).items():
                tables[f"{TITLE[m]}:{part}"] = t
        pairs = behaviour_target_pairs(ds)
        result = run_analysis(tables, pairs, ds.item_column("group")[pairs.target], ds.meta["protocol"]["buckets"], [],
                              AnalysisConfig(seed=seed))
        for group, g in result.separation["groups"].items():
            for v in g["views"]:
                gap = "—" if v["gap"] is None else f"{v['gap']:+.2f}"
                lines.append(f"| {TITLES[n]} | {group} | {v['view']} | {v['space']} | {v['auc']:.3f} | {gap} |")
            if g["views"]:
                plot_pairs(result.samples[group], g["views"], group, result.separation["top_fraction"], "pretrain:id",
                           40, out / f"fig3_{slug(TITLES[n])}_{group}.png")
    return "\n".join(lines)


def variant_table(runs: dict[str, Runs], seeds: list[int], variants: dict[str, callable], title: str,
                  out: Path) -> str:
    """Rows = variants, columns = datasets (HR@10, nDCG@10, warm / median / cold HR@10) and the wall time of a row
    (every stage it is built on, per seed), and a bar plot."""
    from padcore.report import _plt

    lines = ["| " + title + " | " + " | ".join(f"{TITLES[n]} HR@10 | nDCG@10 | w / m / c HR@10" for n in runs)
             + " | wall s (per seed, " + " / ".join(TITLES[n] for n in runs) + ") |",
             "|---" * (3 * len(runs) + 2) + "|"]
    means = {}
    for label, make in variants.items():
        row, walls = [label], []
        for n, r in runs.items():
            folders = [make(r, s) for s in seeds]
            c = [cells(metrics(f)) for f in folders]
            means[(label, n)] = np.mean([x["hr@10"] for x in c])
            row += [mean_std([x["hr@10"] for x in c]), mean_std([x["ndcg@10"] for x in c]),
                    " / ".join(f"{np.mean([x[f'{g} hr@10'] for x in c]):.2f}" for g in GROUPS)]
            walls.append(f"{np.mean([wall(f) for f in folders]):.0f}")
        lines.append("| " + " | ".join(row + [" / ".join(walls)]) + " |")
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.6), squeeze=False)
    for ax, n in zip(axes[0], runs):
        ax.bar(range(len(variants)), [means[(v, n)] for v in variants], color="tab:blue")
        ax.set_xticks(range(len(variants)), list(variants), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("HR@10 (%)")
        ax.set_title(TITLES[n], fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "\n".join(lines)


SECTIONS = ("table2", "table3", "fig3", "fig4", "fig5a", "fig5b")


def missing(args: argparse.Namespace) -> list[str]:
    """What a run with these arguments leaves out of the full reproduction (all of it, both datasets,
    both losses, every baseline, seeds 0-2): said at the top of the file it writes."""
    gaps = [name for name in SECTIONS if name not in args.only]
    if set(args.datasets) != set(SOURCES):
        gaps.append("dataset " + ", ".join(TITLES[n] for n in SOURCES if n not in args.datasets))
    if "table2" in args.only:
        gaps += [f"Table 2 with {loss.upper()}" for loss in ("bce", "ce") if loss not in args.losses]
        gaps += [f"Table 2's {TITLE[b]}" for b in BASELINES if b not in args.baselines]
    figure_seeds = args.figure_seeds or args.seeds
    if not {0, 1, 2} <= set(args.seeds):
        gaps.append("seeds " + ", ".join(str(s) for s in (0, 1, 2) if s not in args.seeds))
    elif not {0, 1, 2} <= set(figure_seeds):
        gaps.append("Table 3 and the figures for seeds " + ", ".join(str(s) for s in (0, 1, 2) if s not in figure_seeds))
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--losses", nargs="+", default=["bce", "ce"], help="for Table 2 (the rest is BCE)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--figure-seeds", type=int, nargs="+", help="seeds for Table 3 and the figures (default: --seeds)")
    ap.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=BASELINES,
                    help="Table 2's baselines (default all)")
    ap.add_argument("--only", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training option for every run")
    ap.add_argument("--no-write", action="store_true",
                    help="print without writing bench/REPRODUCTION.md (figures go to <work>/figures)")
    args = ap.parse_args()
    runs = {n: Runs(args.work, n, parse_set(args.set)) for n in args.datasets}
    figures = args.work / "figures" if args.no_write else ROOT / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    s, fs = args.seeds, args.figure_seeds or args.seeds
    sections = {
        "table2": ("Table 2: overall comparison", lambda: table2(runs, s, args.losses, args.baselines)),
        "table3": ("Table 3: other backbones (BCE)", lambda: table3(runs, fs)),
        "fig3": (f"Fig. 3 / 7: near and far ID pairs under each model's tables (BCE, seed {fs[0]})",
                 lambda: fig3(runs, fs[0], figures)),
        "fig4": ("Fig. 4: anchored vs non-anchored alignment (BCE)", lambda: variant_table(
            runs, fs, {**{m: lambda r, seed, m=m: r.pad("bce", seed, align={} if m == "anchored" else {"align_mode": m})
                          for m in ALIGN_MODES},
                       "no alignment (SMEM)": lambda r, seed: r.model("smem", "bce", seed)},
            "alignment", figures / "fig4.png")),
        "fig5a": ("Fig. 5(a): alignment kernels (BCE)", lambda: variant_table(
            runs, fs, {k: lambda r, seed, k=k: r.pad("bce", seed, align={} if k == "gaussian" else {"kernel": k})
                       for k in KERNELS}, "kernel", figures / "fig5a.png")),
        "fig5b": ("Fig. 5(b): experts and gate (BCE)", lambda: variant_table(
            runs, fs, {label: lambda r, seed, o=o: r.pad("bce", seed, **o) for label, o in ABLATIONS.items()},
            "phase-3 variant",
            figures / "fig5b.png")),
    }
    over = ", ".join(map(str, s)) + ("" if fs == s else f" (Table 2) and {', '.join(map(str, fs))} (the rest)")
    parts = [f"# Reproducing the paper's comparisons\n\nTest split, percent, mean ± sample std over seeds {over}; MiniLM "
             f"text (offline; the paper used LLM2Vec); datasets "
             f"{', '.join(TITLES[n] for n in runs)}. Machine: {machine()}. Command: `PAD_DATA_HOME=../shared/datasets "
             f"python bench/reproduce.py {' '.join(sys.argv[1:])}`. Figures in `bench/figures/`. Wall times are "
             f"seconds per seed to train a row and every stage it is built on, each once (Table 2's untrained "
             f"text-similarity row: its own step); the runs shared the machine with other runs, so they say more "
             f"about order than about an idle machine's speed.\n"]
    gaps = missing(args)
    if gaps:
        parts.append(f"**Partial.** Not in this file: {'; '.join(gaps)}.\n")
    for key in args.only:
        heading, make = sections[key]
        parts.append(f"## {heading}\n\n{make()}\n")
        print(parts[-1], flush=True)
    if not args.no_write:
        (ROOT / "REPRODUCTION.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
