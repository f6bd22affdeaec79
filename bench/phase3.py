"""Phase 3's time: `pad finetune` on the quality bench's phase-1 and phase-2 models, per expert set, and
optionally the same with another checkout's padcore, alternated in one run on one machine.

Each fit runs in a fresh process (its peak RSS is its own) with `threads` torch threads;
printed per fit: wall seconds, the seconds of the experts phase 3 trains alone
(`tuned`, `llm_train=rec`) and of the fusion's cross-fit, epochs, peak RSS and test
HR@10 / nDCG@10. With `--against DIR` (e.g. `git worktree add /tmp/old <rev>`), each
fit runs with DIR's padcore right after this checkout's:

    PAD_DATA_HOME=../shared/datasets python bench/phase3.py [--against /tmp/old]
        [--experts id,align,llm,sim id,align,llm,sim,tuned] [--dataset prime_pantry] [--loss bce] [--seed 0]
        [--work runs/bench-quality] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import ROOT, TITLES, machine, prepare, trained, write_section
from padcore import steps

CHILD = """
import json, resource, sys, time
args = json.loads(sys.argv[1])
sys.path.insert(0, args["checkout"])  # before the working directory, which `python -c` puts first
from padcore import steps
start = time.perf_counter()
m = steps.finetune(*args["paths"], **args["options"])
wall = time.perf_counter() - start
folds = sum(h["seconds"] for h in m["history"] if h.get("fold"))
own = {k[: -len("_expert")]: v["epochs"] * v["seconds_per_epoch"] for k, v in m.items() if k.endswith("_expert")}
print(json.dumps({"padcore": steps.__file__, "wall": wall, "own": own, "folds": folds, "epochs": m["epochs"],
                  "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "test": [m["test"]["hr@10"], m["test"]["ndcg@10"]]}))
"""


def finetune(checkout: Path, paths: list[str], options: dict, out: Path) -> dict:
    """One phase-3 fit in a fresh process with `checkout`'s padcore; what CHILD prints."""
    args = json.dumps({"checkout": str(checkout.resolve()), "paths": paths + [str(out)], "options": options})
    run = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"phase 3 with {checkout} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", type=Path, help="another checkout whose padcore runs each fit too")
    ap.add_argument("--experts", nargs="+", default=["id,align,llm,sim", "id,align,llm,sim,tuned"])
    ap.add_argument("--dataset", default="prime_pantry", choices=list(TITLES))
    ap.add_argument("--loss", default="bce")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the table without updating bench/RESULTS.md")
    args = ap.parse_args()

    dataset, text = prepare(args.work, args.dataset)
    run_dir = args.work / args.dataset / args.loss / f"seed{args.seed}"
    phase1, phase2 = run_dir / "pretrain", run_dir / "align"
    trained(phase1, lambda out: steps.pretrain(dataset, out, seed=args.seed, loss=args.loss))
    trained(phase2, lambda out: steps.align(dataset, text, phase1, out))
    paths = [str(p) for p in (dataset, text, phase1, phase2)]
    here = ROOT.parent
    checkouts = {"this checkout": here, **({f"`{args.against}`": args.against} if args.against else {})}
    lines = ["| experts | padcore | wall s (× this checkout's) | trained alone s | cross-fit s (epochs) | "
             "peak RSS GiB | test HR@10 / nDCG@10 |", "|---|---|---|---|---|---|---|"]
    for experts in args.experts:
        for k, (label, checkout) in enumerate(checkouts.items()):
            out = args.work / "phase3-bench" / f"{experts.replace(',', '-')}-{k}"
            shutil.rmtree(out, ignore_errors=True)
            r = finetune(checkout, paths, {"experts": experts, "threads": args.threads}, out)
            if k == 0:
                base = r
            own = ", ".join(f"{name} {s:.0f}" for name, s in r["own"].items()) or "—"
            lines.append(f"| {experts} | {label} | {r['wall']:.0f} ({r['wall'] / base['wall']:.2f}) | {own} | "
                         f"{r['folds']:.0f} ({r['epochs']}) | {r['rss_gib']:.1f} | "
                         f"{r['test'][0]:.3f} / {r['test'][1]:.3f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    if not args.no_write:
        against = f" against `{args.against}` (another checkout)" if args.against else ""
        write_section(ROOT / "RESULTS.md", "## phase 3 time", (
            f"## phase 3 time\n\n`bench/phase3.py`{against}: `pad finetune` on the quality bench's "
            f"{TITLES[args.dataset]} {args.loss.upper()} seed-{args.seed} phase-1 and phase-2 models, "
            f"{args.threads} threads, each fit in its own process, the checkouts alternated. Machine: {machine()}.\n\n"
            f"{table}\n"))


if __name__ == "__main__":
    main()
