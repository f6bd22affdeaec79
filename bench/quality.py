"""Quality benchmark on Prime Pantry: SASRec vs PAD, with the paper's BCE loss and with full-softmax CE.

Runs preprocess and embed (MiniLM, offline) once, then for each loss and seed the
three phases (pretrain -> align -> finetune); reports test HR@10 / nDCG@10 overall
and per warm / median / cold group, mean ± std over seeds, with epochs and wall time,
and writes the table into bench/RESULTS.md (section "## quality").

    PAD_DATA_HOME=../shared/datasets python bench/quality.py [--seeds 0 1 2] [--losses bce ce]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import numpy as np

from padcore import steps

ROOT = Path(__file__).resolve().parent
COLUMNS = ("hr@10", "ndcg@10")
GROUPS = ("warm", "median", "cold")


def cells(metrics: dict) -> dict[str, float]:
    t = metrics["test"]
    out = {f"all {c}": t[c] for c in COLUMNS}
    out.update({f"{g} {c}": t["groups"][g][c] for g in GROUPS for c in COLUMNS})
    return out


def run_seed(work: Path, dataset: Path, text: Path, loss: str, seed: int, options: dict) -> dict[str, dict]:
    base = work / f"{loss}-seed{seed}"
    opts = dict(options, loss=loss, seed=seed)

    def phase(name: str, step, *inputs, **kw) -> dict:
        """Run a phase unless an earlier bench run already finished it (then reuse its artifact)."""
        out = base / name
        if not (out / "metrics.json").is_file():
            step(*inputs, out, **kw)
        return json.loads((out / "metrics.json").read_text())

    m1 = phase("pretrain", steps.pretrain, dataset, **opts)
    m2 = phase("align", steps.align, dataset, text, base / "pretrain")
    m3 = phase("finetune", steps.finetune, dataset, text, base / "pretrain", base / "align")
    secs = [m["wall_seconds"] for m in (m1, m2, m3)]
    return {
        "sasrec": {**cells(m1), "epochs": m1["epochs"], "seconds": secs[0]},
        "pad": {**cells(m3), "epochs": f"{m1['epochs']}+{m2['epochs']}+{m3['epochs']}", "seconds": sum(secs),
                "phase seconds": secs,
                "seconds/epoch": [m1["seconds_per_epoch"], m2["seconds_per_epoch"], m3["seconds_per_epoch"]],
                "align": {**cells(m2), "epochs": m2["epochs"], "seconds": secs[1]}},
    }


def table(results: dict[str, list[dict]]) -> str:
    keys = [f"{g} {c}" for g in ("all",) + GROUPS for c in COLUMNS]
    head = "| model | " + " | ".join(k.replace("all ", "") for k in keys) + " | epochs | wall s |"
    lines = [head, "|" + "---|" * (len(keys) + 3)]
    for name, runs in results.items():
        row = [f"{np.mean([r[k] for r in runs]):.3f} ± {np.std([r[k] for r in runs]):.3f}" for k in keys]
        epochs = ", ".join(str(r["epochs"]) for r in runs)
        secs = f"{np.mean([r['seconds'] for r in runs]):.0f}"
        lines.append(f"| {name} | " + " | ".join(row) + f" | {epochs} | {secs} |")
    return "\n".join(lines)


def phase_table(runs: list[dict]) -> str:
    """Per run: epochs, seconds per epoch and wall seconds of each phase (pretrain / align / finetune)."""
    lines = ["| loss | seed | epochs | s/epoch | phase wall s | total wall s |", "|---|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: (r["loss"], r["seed"])):
        pad = run["rows"]["pad"]
        per_epoch = " / ".join(f"{x:.1f}" for x in pad["seconds/epoch"])
        walls = " / ".join(f"{x:.0f}" for x in pad["phase seconds"])
        lines.append(f"| {run['loss']} | {run['seed']} | {pad['epochs'].replace('+', ' / ')} | {per_epoch} | {walls} "
                     f"| {pad['seconds']:.0f} |")
    return "\n".join(lines)


def machine() -> str:
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    import os

    return f"{model}, {os.cpu_count()} cores, torch CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--losses", nargs="+", default=["bce", "ce"])
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="training option for all runs (given to pretrain; align and finetune inherit it, except lr)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table from the runs recorded in --work")
    ap.add_argument("--no-write", action="store_true", help="print the table without updating bench/RESULTS.md")
    args = ap.parse_args()
    options = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
               for k, v in (s.split("=", 1) for s in args.set)}

    dataset, text, record = args.work / "dataset", args.work / "text", args.work / "runs.jsonl"
    if not args.report_only:
        if not (dataset / "meta.json").is_file():
            steps.preprocess("prime_pantry", dataset)
        if not (text / "meta.json").is_file():
            steps.embed(dataset, text, encoder="minilm")
        for loss in args.losses:
            for seed in args.seeds:
                rows = run_seed(args.work, dataset, text, loss, seed, options)
                with open(record, "a") as f:  # one line per finished run: several processes can share the file
                    f.write(json.dumps({"loss": loss, "seed": seed, "options": options, "rows": rows}) + "\n")

    results: dict[str, list[dict]] = {}
    seeds: set[int] = set()
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    for run in runs:
        seeds.add(run["seed"])
        loss = run["loss"].upper()
        results.setdefault(f"SASRec-{loss}", []).append(run["rows"]["sasrec"])
        results.setdefault(f"(align expert)-{loss}", []).append(run["rows"]["pad"]["align"])  # phase 2 alone
        results.setdefault(f"PAD-{loss}", []).append(run["rows"]["pad"])
    order = [f"{m}-{loss}" for loss in ("BCE", "CE", "SAMPLED") for m in ("SASRec", "(align expert)", "PAD")]
    results = {k: results[k] for k in sorted(results, key=lambda k: order.index(k) if k in order else 99)}
    text_table = table(results) + "\n\nPhases (pretrain / align / finetune) of each run:\n\n" + phase_table(runs)
    print(text_table)
    if not args.no_write:
        section = (
            f"## quality\n\nPrime Pantry, text = MiniLM (offline), test split, percent; mean ± std over the seeds "
            f"run ({sorted(seeds)}; runs per row in the epochs column).\nMachine: {machine()}. "
            f"Command: `PAD_DATA_HOME=../shared/datasets python bench/quality.py`.\n\n{text_table}\n"
        )
        write_section(ROOT / "RESULTS.md", "## quality", section)


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the section that starts with `heading` in a Markdown file."""
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + body
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + body + ("\n" + old[end + 1 :] if end >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    main()
