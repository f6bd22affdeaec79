"""Why some of Table 2's baselines fall below SASRec, measured -> bench/RESULTS.md ("baselines below SASRec").

On bench/reproduce.py's Table 2 artifacts (the same --work; BCE, the paper's loss),
per dataset and seed:

- text's share of the item vector: Hybrid's and DisCo's item vector is a linear
  projection of ID and text parts; for each part, the std over the catalogue of its
  contribution through that projection — how far the text moves an item;
- MAKE's experts alone: the fused model, its ID expert alone and its text expert
  alone, beside that text expert as its first stage left it (MoRec);

and probe runs on Prime Pantry (trained here, kept under --work, resumable), each
changing one thing of a Table 2 model: Hybrid with a trainable ID table, DisCo
without its disentanglement loss.

    PAD_DATA_HOME=../shared/datasets python bench/baselines.py --work <bench/reproduce.py's --work>
        [--datasets ...] [--seeds 0 1 2] [--probe-seed 0] [--set threads=1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from common import GROUPS, ROOT, SOURCES, TITLES, cells, machine, mean_std, parse_set, prepare, trained, write_section
from padcore import steps
from padcore.checkpoint import load_model
from padcore.dataset import load_dataset
from padcore.ensemble import evaluate
from padcore.experts import PadModel
from padcore.text import load_text

LOSS = "bce"
PROBES = {  # label -> (model, options): one change each to a Table 2 model
    "Hybrid, trainable ID table (`freeze_id=false`)": ("hybrid", {"freeze_id": False}),
    "DisCo without the disentanglement loss (`alpha=0`)": ("disco", {"alpha": 0.0}),
}


def contributions(model: PadModel) -> dict[str, torch.Tensor]:
    """Hybrid / DisCo: each part's contribution to every item's vector through the model's projection
    ([items, d] per part; their sum plus the projection's bias is the item vector)."""
    (name, expert), = model.experts.items()
    tower = expert.tower
    items = torch.arange(1, tower.rows)
    if name == "hybrid":
        named = {"ID": tower.ids(items), "text": tower.text(items)}
    else:  # disco: two ID chunks, two text chunks
        named = dict(zip(("ID", "ID 2", "text", "text 2"), tower.chunks(items)))
    out, start = {}, 0
    for label, x in named.items():
        out[label] = x @ tower.project.weight[:, start : start + x.shape[1]].T
        start += x.shape[1]
    return out


@torch.no_grad()
def parts(model_dir: Path, text: np.ndarray) -> dict[str, float]:
    """Std over the catalogue (mean over dimensions) of each part's contribution to the item vector."""
    return {k: float(v.std(0).mean()) for k, v in contributions(load_model(model_dir, text)).items()}


def make_experts(model_dir: Path, ds, text: np.ndarray) -> dict[str, dict]:
    """Test metrics of MAKE fused, of each of its experts alone, and of its text expert as stage 1 left it."""
    model = load_model(model_dir, text)
    out = {"fused": json.loads((model_dir / "metrics.json").read_text())["test"]}
    for kind, expert in model.experts.items():
        out[f"{kind} alone"] = evaluate(PadModel({kind: expert}), ds)
    out["stage 1"] = json.loads((model_dir / "stages" / "morec" / "metrics.json").read_text())["test"]
    return out


def measure(work: Path, name: str, seed: int) -> dict:
    """One dataset and seed: the parts of Hybrid's and DisCo's item vectors, and MAKE's experts alone."""
    run = work / name / LOSS / f"seed{seed}"
    for model in ("hybrid", "disco", "make"):
        if not (run / model / "metrics.json").is_file():
            raise SystemExit(f"{run / model}: not trained yet; run bench/reproduce.py --only table2 with this --work")
    dataset, text_dir = prepare(work, name)
    ds = load_dataset(dataset)
    text = load_text(text_dir, ds)
    return {"parts": {m: parts(run / m, text) for m in ("hybrid", "disco")},
            "make": make_experts(run / "make", ds, text)}


def probe(work: Path, seed: int, label: str, options: dict) -> Path:
    """A probe run (trained if missing) from the Prime Pantry phase-1 model of `seed`, as Table 2's runs start."""
    model, change = PROBES[label]
    dataset, text = prepare(work, "prime_pantry")
    run = work / "prime_pantry" / LOSS / f"seed{seed}"
    out = run / "probes" / f"{model}-{'-'.join(f'{k}-{v}' for k, v in change.items())}"
    trained(out, lambda o: steps.train(model, dataset, text, o, reuse={"pretrain": run / "pretrain"}, seed=seed,
                                       loss=LOSS, **{**options, **change}))
    return out


def parts_table(found: dict[tuple[str, int], dict]) -> str:
    lines = ["| dataset | model | ID part | text part | text / ID |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(n for n, _ in found):
        for model, title in (("hybrid", "Hybrid"), ("disco", "DisCo")):
            runs = [v["parts"][model] for (n, _), v in found.items() if n == name]
            ids = [np.mean([r[k] for k in r if k.startswith("ID")]) for r in runs]
            texts = [np.mean([r[k] for k in r if k.startswith("text")]) for r in runs]
            lines.append(f"| {TITLES[name]} | {title} | {mean_std(ids)} | {mean_std(texts)} | "
                         f"{mean_std([t / i for t, i in zip(texts, ids)])} |")
    return "\n".join(lines)


def make_table(found: dict[tuple[str, int], dict]) -> str:
    cols = ("fused", "id alone", "llm alone", "stage 1")
    lines = ["| dataset | MAKE (fused) | its ID expert alone | its text expert alone | the text expert after stage 1 "
             "(MoRec) |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(n for n, _ in found):
        runs = [v["make"] for (n, _), v in found.items() if n == name]
        row = []
        for c in cols:
            hr = [cells({"test": r[c]})["hr@10"] for r in runs]
            cold = [cells({"test": r[c]})["cold hr@10"] for r in runs]
            row.append(f"{np.mean(hr):.2f} (cold {np.mean(cold):.2f})")
        lines.append(f"| {TITLES[name]} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def probe_table(work: Path, seed: int, probes: dict[str, Path]) -> str:
    run = work / "prime_pantry" / LOSS / f"seed{seed}"
    rows = {"SASRec": run / "pretrain", "Hybrid": run / "hybrid", "DisCo": run / "disco", **probes}
    lines = ["| run | best validation nDCG@10 (epoch) | test HR@10 / nDCG@10 | warm / median / cold HR@10 |",
             "|---|---|---|---|"]
    for label, folder in rows.items():
        m = json.loads((folder / "metrics.json").read_text())
        best = max(h["valid_ndcg@10"] for h in m["history"])
        c = cells(m)
        groups = " / ".join(f"{c[f'{g} hr@10']:.2f}" for g in GROUPS)
        lines.append(f"| {label} | {best:.2f} ({m['best_epoch']} of {m['epochs']}) | {c['hr@10']:.2f} / "
                     f"{c['ndcg@10']:.2f} | {groups} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--probe-seed", type=int, default=0, help="the Prime Pantry seed the probe runs start from")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training option for the probes")
    ap.add_argument("--no-write", action="store_true", help="print the tables without updating bench/RESULTS.md")
    args = ap.parse_args()
    options = parse_set(args.set)

    found = {(name, seed): measure(args.work, name, seed) for name in args.datasets for seed in args.seeds}
    probes = {label: probe(args.work, args.probe_seed, label, options) for label in PROBES}
    seeds = ", ".join(map(str, args.seeds))
    text = "\n".join([
        f"Text's share of the item vector (BCE, mean ± sample std over seeds {seeds}): the std over the catalogue "
        "of each part's contribution to the item vector through the model's projection, averaged over the "
        "dimensions (DisCo: the mean of its two ID and of its two text chunks).", "", parts_table(found), "",
        f"MAKE's experts (BCE, test HR@10, mean over seeds {seeds}):", "", make_table(found), "",
        f"One change at a time (Prime Pantry, BCE, seed {args.probe_seed}; validation = the epoch early stopping "
        "kept):", "", probe_table(args.work, args.probe_seed, probes), ""])
    print(text)
    if not args.no_write:
        section = (f"## baselines below SASRec\n\n`bench/baselines.py`: why Hybrid, MAKE and DisCo can fall below "
                   f"SASRec in Table 2 (bench/REPRODUCTION.md), measured on its artifacts. Machine: {machine()}. "
                   f"Command: `PAD_DATA_HOME=../shared/datasets python bench/baselines.py --work <bench/reproduce.py's "
                   f"--work>{''.join(' --set ' + s for s in args.set)}`.\n\n{text}\n")
        write_section(ROOT / "RESULTS.md", "## baselines below SASRec", section)


if __name__ == "__main__":
    main()
