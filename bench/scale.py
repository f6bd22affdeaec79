"""Scale benchmark: every pad step on synthetic logs of the paper's sizes, and how cost grows.

A synthetic log has the shape of the real ones: sequences of 5-23 items (the
protocol keeps the latest 23) with a chosen mean, power-law item popularity,
every item seen at least once, and item texts given as random unit vectors of
the requested width, written as a float16 text artifact (no encoder). Each step
runs in its own process, as a pipeline step does; the bench reports its time,
peak resident memory (`wait4`) and artifact size:

- preprocess (`pad preprocess --source files:...`),
- pretrain, align, finetune (`--epochs` each, default 1): training seconds per
  epoch and the full-ranking evaluation seconds, timed apart inside the step,
- analyze (Kendall's tau and pair separation),
- recommend (`pad recommend`, when the CLI has it).

    python bench/scale.py run --preset mind --dim 384
    python bench/scale.py run --preset electronics --dim 4096
    python bench/scale.py sweep --users 25000 --items 10000 --interactions 250000 --dim 4096
    python bench/scale.py table /work/runs/scale/*/result.json   # the Markdown for bench/RESULTS.md

Data and artifacts go under --work (default /work/runs/scale); a generated log
is reused by a later run with the same spec. A step whose resident memory
passes --rss-cap is stopped and reported as such, so a run never starves the
machine it shares.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PRESETS = {  # the paper's Table 1, after its protocol (users with >= 5 items, the latest 23 kept)
    "mind": (630_235, 79_707, 9_667_540),
    "electronics": (598_307, 423_191, 5_137_265),
}
MIN_LEN, KEEP_LAST = 5, 23  # the default protocol: min_len 5, max_len 20 (+3 targets)
PHASES = ("pretrain", "align", "finetune")
# (training epochs, validations, share of the users each validation ranks) of a full run with the defaults:
# phases 1 and 2 run their 60 epochs on Prime Pantry (bench/RESULTS.md "quality"); phase 3 fits its fusion
# twice (cross-fitting, each time choosing on half the users), taken as stopping after `patience` = 10 epochs
FULL_RUN = {"pretrain": (60, 61, 1.0), "align": (60, 61, 1.0), "finetune": (20, 22, 0.5)}
GIB = 2**30


@dataclass(frozen=True)
class Spec:
    """One synthetic log and its text width."""

    users: int
    items: int
    interactions: int
    dim: int
    alpha: float = 1.0  # item popularity ~ 1 / (rank + offset) ** alpha
    offset: float = 10.0
    seed: int = 0

    @property
    def name(self) -> str:
        return f"u{self.users}-i{self.items}-n{self.interactions}-d{self.dim}"


# ---------------------------------------------------------------- synthetic data


def length_parameter(mean: float) -> float:
    """p such that min(MIN_LEN - 1 + Geometric(p), KEEP_LAST) has the given mean."""
    span = KEEP_LAST - MIN_LEN + 1
    if not MIN_LEN <= mean <= KEEP_LAST:
        raise SystemExit(f"mean sequence length {mean:.2f}: must lie in [{MIN_LEN}, {KEEP_LAST}]")

    def expected(p: float) -> float:  # E[min(G, span)] = sum_{k<span} (1-p)^k
        return MIN_LEN - 1 + (1 - (1 - p) ** span) / p

    lo, hi = 1e-9, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(mid) > mean else (lo, mid)
    return (lo + hi) / 2


def generate(folder: Path, spec: Spec) -> int:
    """Write interactions.parquet and items.parquet (the `files:` format); returns the interaction count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(spec.seed)
    p = length_parameter(spec.interactions / spec.users)
    lengths = np.minimum(MIN_LEN - 1 + rng.geometric(p, size=spec.users), KEEP_LAST)
    total = int(lengths.sum())
    if total < spec.items:
        raise SystemExit(f"{total:,} interactions cannot cover {spec.items:,} items")
    # power-law popularity over a random ranking of the items, and every item at least once
    rank_of = rng.permutation(spec.items)
    weight = 1.0 / (np.arange(spec.items) + spec.offset) ** spec.alpha
    items = rank_of[np.minimum(np.searchsorted(np.cumsum(weight / weight.sum()), rng.random(total)), spec.items - 1)]
    items[rng.choice(total, size=spec.items, replace=False)] = rng.permutation(spec.items)
    users = np.repeat(np.arange(spec.users), lengths)
    # each user's items in time order from a random start; rows shuffled as in a real export
    stamps = np.repeat(rng.integers(1_500_000_000, 1_600_000_000, size=spec.users), lengths)
    stamps += np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    order = rng.permutation(total)
    user_names = pa.array([f"U{u}" for u in range(spec.users)])
    item_names = pa.array([f"I{i}" for i in range(spec.items)])
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user": user_names.take(pa.array(users[order])),
                             "item": item_names.take(pa.array(items[order])),
                             "timestamp": pa.array(stamps[order])}), folder / "interactions.parquet")
    pq.write_table(pa.table({"item": item_names, "text": pa.array([f"item {i}" for i in range(spec.items)])}),
                   folder / "items.parquet")
    return total


def write_random_text(dataset: Path, out: Path, dim: int, seed: int, chunk: int = 1 << 14) -> None:
    """A float16 text artifact of random unit vectors for the dataset's items (row 0 = padding zeros)."""
    from padcore.artifacts import META, atomic_dir, read_meta, write_json
    from padcore.text import EMBEDDINGS, FORMAT, text_hash

    meta = read_meta(dataset, "dataset")
    if (out / META).is_file() and {k: read_meta(out, "text").get(k) for k in ("dataset_id", "dim")} == {
            "dataset_id": meta["dataset_id"], "dim": dim}:
        return  # already made for this dataset
    rows = meta["n_items"] + 1
    settings = {"encoder": "random", "model": f"unit normal vectors, seed {seed}", "dim": dim}
    rng = np.random.default_rng(seed)
    with atomic_dir(out) as tmp:
        table = np.lib.format.open_memmap(tmp / EMBEDDINGS, mode="w+", dtype=np.float16, shape=(rows, dim))
        table[0] = 0
        for lo in range(1, rows, chunk):
            hi = min(lo + chunk, rows)
            v = rng.standard_normal((hi - lo, dim), dtype=np.float32)
            table[lo:hi] = v / np.linalg.norm(v, axis=1, keepdims=True)
        table.flush()
        del table
        write_json(tmp / META, {
            "kind": "text", "format": FORMAT, "encoder": "random", "model": settings["model"], "dim": dim,
            "dtype": "float16", "rows": rows, "n_items": meta["n_items"], "items": meta["n_items"],
            "item_hash": meta["item_hash"], "dataset_id": meta["dataset_id"],
            "text_hash": text_hash(meta["item_hash"], settings, "float16", None), "settings": settings,
            "empty_texts": 0, "empty_items": [], "placeholder": None,
        })


# ---------------------------------------------------------------- running a step


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(report: Path, argv: list[str]) -> int:
    """Run `pad <argv>` in this process with every full-ranking evaluation timed; write `report`.

    The library is imported before the clock starts, so `seconds` is the step's own work.
    """
    import padcore.steps
    import padcore.trainer as trainer
    from pad.cli import main

    for name in padcore.steps.__all__:  # every step's module
        getattr(padcore.steps, name)

    original, evals = trainer.rank_split, []

    def timed(model, split, *args, **kwargs):
        before, start, cpu = _max_rss(), time.perf_counter(), time.process_time()
        ranks = original(model, split, *args, **kwargs)
        evals.append({"users": len(split.targets), "start": start, "end": time.perf_counter(),
                      "cpu_start": cpu, "cpu_end": time.process_time(),
                      "max_rss_before": before, "max_rss_after": _max_rss()})
        return ranks

    for module in list(sys.modules.values()):  # the trainer's own name and every `from ... import rank_split`
        if getattr(module, "__name__", "").startswith("padcore") and getattr(module, "rank_split", None) is original:
            module.rank_split = timed
    t0, cpu = time.perf_counter(), time.process_time()
    rc = main(argv)
    out = {"rc": rc, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu, "evals": evals}
    import torch

    if torch.cuda.is_initialized():
        out["gpu_peak"] = torch.cuda.max_memory_allocated()
    report.write_text(json.dumps(out))
    return rc


def run_step(name: str, argv: list[str], work: Path, threads: int, rss_cap: float) -> dict:
    """`pad <argv>` in a child process: wall time, peak RSS (wait4), the child's report; stopped above rss_cap."""
    report = work / f".{name}.child.json"
    report.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = (work / f"{name}.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "child", str(report), "--", *argv], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    capped = threading.Event()
    threading.Thread(target=_watch, args=(proc, rss_cap, capped), daemon=True).start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # the bench itself is stopped: stop its step too
        proc.kill()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    out = {"wall": time.perf_counter() - t0, "peak_rss": usage.ru_maxrss * 1024, "rc": proc.returncode,
           "capped": capped.is_set()}
    if report.is_file():
        out.update(json.loads(report.read_text()))
    state = "stopped above the RSS cap" if out["capped"] else f"exit {out['rc']}"
    print(f"  {name:<10} {out['wall']:8.1f} s  peak RSS {out['peak_rss'] / GIB:6.2f} GiB  ({state})", flush=True)
    return out


def _watch(proc: subprocess.Popen, cap: float, capped: threading.Event) -> None:
    """Kill the child (and only it) when its resident memory passes `cap` bytes."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.returncode is None:
        try:
            rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return
        if rss > cap:
            capped.set()
            proc.kill()
            return
        time.sleep(0.2)


def phase_figures(step: dict, history: list[dict]) -> dict:
    """A phase's training s/epoch, validation and full-ranking s (wall and CPU), and where its memory peaked.

    Its evaluation calls are one validation per entry of the metrics' `history` (epoch 0 of each fit,
    then one after each epoch; phase 3 fits twice), then the best model on the valid and test
    splits; an epoch's training is the time between its validation and the one before.
    """
    evals = step.get("evals", [])
    if len(evals) != len(history) + 2:
        return {}
    validations, test = evals[:-2], evals[-1]
    epochs = [(a, b) for a, b, h in zip(validations, validations[1:], history[1:]) if h["epoch"] > 0]
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {
        "train_s_per_epoch": mean([b["start"] - a["end"] for a, b in epochs]),
        "train_cpu_s_per_epoch": mean([b["cpu_start"] - a["cpu_end"] for a, b in epochs]),
        # the validations (of `valid_users` users when set; phase 3: of half the users) and the full test ranking
        "valid_s": mean([e["end"] - e["start"] for e in validations]),
        "valid_cpu_s": mean([e["cpu_end"] - e["cpu_start"] for e in validations]),
        "valid_users": validations[0]["users"],
        "eval_s": test["end"] - test["start"],
        "eval_cpu_s": test["cpu_end"] - test["cpu_start"],
        "eval_users": test["users"],
        "rss_before_eval": evals[0]["max_rss_before"],
        "rss_after_train": max((e["max_rss_before"] for e in evals[1:]), default=None),
    }


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def has_verb(verb: str) -> bool:
    from pad.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return verb in sub.choices


def run_scenario(spec: Spec | None, root: Path, epochs: int, threads: int, rss_cap: float, label: str = "",
                 device: str = "cpu", source: str = "", skip: tuple[str, ...] = (), reuse: tuple[str, ...] = (),
                 options: tuple[str, ...] = (), reuse_from: Path | None = None) -> dict:
    """Run every step (less `skip`) on the synthetic log of `spec` (generated, or reused) or on a pad `source`
    with MiniLM text; `epochs` 0 = the training defaults, `options` = KEY=VALUE training options.

    `reuse`: steps whose artifacts and figures are taken from an earlier `result.json`: this run
    folder's, or `reuse_from`'s (e.g. the ID-only phase 1 of the same log at another text width;
    its artifacts are linked here). Writes and returns `result.json`.
    """
    work = root / (label or spec.name)
    raw, ds, text = work / "raw", work / "dataset", work / "text"
    work.mkdir(parents=True, exist_ok=True)
    source_dir = reuse_from or work
    earlier = json.loads((source_dir / "result.json").read_text())["steps"] if reuse else {}
    steps: dict[str, dict] = {}

    def run(name: str, argv: list[str]) -> dict:
        if name in reuse and name in earlier and not earlier[name]["rc"]:
            print(f"  {name:<10} reused from {source_dir / 'result.json'}", flush=True)
            artifact = work / ("dataset" if name == "preprocess" else name)
            if reuse_from and not artifact.exists():
                artifact.symlink_to(source_dir / artifact.name)
            return steps.setdefault(name, earlier[name])
        steps[name] = run_step(name, argv, work, threads, rss_cap)
        _finish(work, spec, steps, epochs, threads, device, source, options)  # a stopped run keeps its steps
        return steps[name]

    print(f"[scale] {label or spec.name}: " + (f"source {source}, MiniLM text" if source else
          f"{spec.users:,} users, {spec.items:,} items, ~{spec.interactions:,} interactions, {spec.dim}-d text")
          + f"; {epochs or 'default'} epoch(s) per phase, {threads} thread(s), {device}", flush=True)
    if source:
        if run("preprocess", ["preprocess", "--source", source, "--out", str(ds)])["rc"] or run(
                "embed", ["embed", "--dataset", str(ds), "--out", str(text), "--device", device, "--no-cache"])["rc"]:
            return _finish(work, spec, steps, epochs, threads, device, source, options)
    else:
        spec_file = work / "spec.json"
        if "preprocess" not in reuse and not (spec_file.is_file() and json.loads(spec_file.read_text()) == asdict(spec)):
            print(f"[scale] generating {spec.name} ...", flush=True)
            generate(raw, spec)
            spec_file.write_text(json.dumps(asdict(spec)))
        if run("preprocess", ["preprocess", "--source", f"files:{raw}", "--out", str(ds)])["rc"]:
            return _finish(work, spec, steps, epochs, threads, device, source, options)
        write_random_text(ds, text, spec.dim, spec.seed)
    training = [*(["--epochs", str(epochs)] if epochs else []), "--device", device, "--set", f"threads={threads}",
                *(arg for option in options for arg in ("--set", option))]
    m1, m2, m3 = work / "pretrain", work / "align", work / "finetune"
    chain = {
        "pretrain": ["pretrain", "--dataset", str(ds), "--out", str(m1), *training],
        "align": ["align", "--dataset", str(ds), "--text", str(text), "--id-model", str(m1), "--out", str(m2),
                  *training],
        "finetune": ["finetune", "--dataset", str(ds), "--text", str(text), "--id-model", str(m1),
                     "--align-model", str(m2), "--out", str(m3), *training],
        "analyze": ["analyze", "--dataset", str(ds), "--text", str(text), "--id-model", str(m1),
                    "--align-model", str(m2), "--final-model", str(m3), "--out", str(work / "analysis")],
    }
    if has_verb("recommend"):  # issue 14 adds the verb
        chain["recommend"] = ["recommend", "--model", str(m3), "--dataset", str(ds), "--text", str(text),
                              "--out", str(work / "recommendations.parquet")]
    for name, argv in chain.items():
        if name not in skip and run(name, argv)["rc"]:
            break
    return _finish(work, spec, steps, epochs, threads, device, source, options)


def add_phase_figures(work: Path, steps: dict) -> dict:
    """Each finished phase's figures, from its timed evaluation calls and its metrics' history."""
    for phase in PHASES:
        metrics = work / phase / "metrics.json"
        if phase in steps and not steps[phase]["rc"] and metrics.is_file():
            steps[phase].update(phase_figures(steps[phase], json.loads(metrics.read_text())["history"]))
    return steps


def _finish(work: Path, spec: Spec | None, steps: dict, epochs: int, threads: int, device: str,
            source: str, options: tuple[str, ...]) -> dict:
    add_phase_figures(work, steps)
    read = lambda f: json.loads(f.read_text()) if f.is_file() else {}  # noqa: E731
    kept, text = read(work / "dataset" / "meta.json"), read(work / "text" / "meta.json")
    sizes = {name: du(work / name) for name in
             ("raw", "dataset", "text", *PHASES, "analysis", "recommendations.parquet")}
    result = {
        "spec": asdict(spec) if spec else None, "source": source or "synthetic", "device": device,
        "epochs": epochs, "threads": threads, "options": list(options), "machine": machine(),
        "dataset": {k: kept.get(k) for k in ("n_users", "n_items", "n_interactions")} | {"text_dim": text.get("dim")},
        "steps": steps, "sizes": sizes, "recommend": "measured" if "recommend" in steps else
        "skipped" if has_verb("recommend") else "not run: `pad recommend` is not in this checkout's CLI",
    }
    (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


def machine() -> dict:
    import torch

    import padcore

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(padcore.__file__).parent).stdout.strip()  # the code measured
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / GIB, 1), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "commit": commit, "load_average": os.getloadavg()[0]}


def baseline_rss(work: Path) -> int:
    """Peak RSS of a step process that only imports pad (what every step pays before any data)."""
    return run_step("baseline", ["--help"], work, 1, float("inf"))["peak_rss"]


# ---------------------------------------------------------------- reporting


def projected_seconds(step: dict, phase: str, cpu: bool, valid_users: int = 0) -> float | None:
    """A full run of the phase (FULL_RUN), then its full valid and test rankings.

    A validation costs the measured full ranking times its share of the users (all of them, or
    `valid_users`), so the projection does not depend on the option the measured run used.
    cpu: from CPU seconds (one idle core: steadier than wall time on a shared machine); else wall (GPU).
    """
    kind = "cpu_s" if cpu else "s"
    train, full = step.get(f"train_{kind}_per_epoch"), step.get(f"eval_{kind}")
    if train is None:
        return None
    epochs, validations, share = FULL_RUN[phase]
    users = step["eval_users"] * share
    return epochs * train + validations * full * min(valid_users or users, users) / step["eval_users"] + 2 * full


def slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares exponent b of y ~ x^b."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a and b and b > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.array(pts).T
    return float(np.polyfit(lx, ly, 1)[0])


def measures(result: dict, base_rss: int) -> dict[str, float | None]:
    """The figures a sweep fits exponents to: per step, CPU seconds (steadier than wall time on a shared
    machine) and peak RSS above the import baseline."""
    out: dict[str, float | None] = {}
    for name, s in result["steps"].items():
        if s["rc"]:
            continue
        if name in PHASES:
            out[f"{name} train s/epoch"] = s.get("train_cpu_s_per_epoch")
            out[f"{name} eval s"] = s.get("eval_cpu_s")
        else:
            out[f"{name} s"] = s.get("cpu_seconds")
        out[f"{name} RSS"] = max(s["peak_rss"] - base_rss, 1)
    return out


def sweep(args: argparse.Namespace) -> None:
    root = Path(args.work) / "sweep"
    root.mkdir(parents=True, exist_ok=True)
    base_rss = baseline_rss(root)
    points = {axis: [] for axis in args.axes}
    for axis in points:
        for f in args.factors:
            spec = Spec(args.users * (f if axis == "users" else 1), args.items * (f if axis == "items" else 1),
                        args.interactions * (f if axis == "users" else 1), args.dim, seed=args.seed)
            result = run_scenario(spec, root, args.epochs, args.threads, args.rss_cap * GIB, f"{axis}-x{f}",
                                  options=tuple(args.options))
            points[axis].append((f, measures(result, base_rss)))
    exponents = {axis: {k: slope([f for f, _ in pts], [m.get(k) for _, m in pts]) for k in pts[0][1]}
                 for axis, pts in points.items()}
    summary = {"base": vars(args) | {"baseline_rss": base_rss}, "points": points, "exponents": exponents}
    (root / "sweep.json").write_text(json.dumps(summary, indent=1))
    print(sweep_table(summary))


def gib(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def sec(s: float | None) -> str:
    return "-" if s is None else f"{s:,.1f}"


def pair(wall: float | None, cpu: float | None) -> str:
    return "-" if wall is None else f"{wall:,.1f} ({cpu:,.1f})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def scenario_table(results: list[dict], valid_users: int = 20_000) -> str:
    """Per run and step: wall time, training s/epoch, validation and full-ranking s, peak RSS (and GPU
    memory), and a full run projected with every user validated and with `valid_users`."""
    gpu = any("gpu_peak" in s for r in results for s in r["steps"].values())
    lines = ["| run | step | wall s | train s/epoch (CPU s) | validation s (CPU s) | full ranking s (CPU s) | "
             "peak RSS GiB |" + (" peak GPU GiB |" if gpu else "")
             + f" full run, projected | same, valid_users={valid_users:,} |", "|---" * (9 + gpu) + "|"]
    for r in results:
        d = r["dataset"]
        name = (f"{d['n_users']:,} users, {d['n_items']:,} items, {d['n_interactions']:,} inter., "
                f"{d['text_dim']}-d" if d["n_users"] else r["source"])
        totals = [0.0, 0.0]
        for step, s in r["steps"].items():
            state = " (stopped: RSS cap)" if s["capped"] else (f" (exit {s['rc']})" if s["rc"] else "")
            if step in PHASES and r["epochs"]:
                full = [projected_seconds(s, step, r["device"] == "cpu", v) for v in (0, valid_users)]
            else:  # a step run once, or a phase run to the end with the defaults
                full = [(s.get("cpu_seconds") if r["device"] == "cpu" else None) or s["wall"]] * 2
            totals = [t + (f or 0.0) for t, f in zip(totals, full)]
            lines.append(f"| {name} | {step}{state} | {sec(s['wall'])} | "
                         f"{pair(s.get('train_s_per_epoch'), s.get('train_cpu_s_per_epoch'))} | "
                         f"{pair(s.get('valid_s'), s.get('valid_cpu_s'))} | "
                         f"{pair(s.get('eval_s'), s.get('eval_cpu_s'))} | {gib(s['peak_rss'])} |"
                         + (f" {gib(s.get('gpu_peak'))} |" if gpu else "")
                         + f" {duration(full[0])} | {duration(full[1])} |")
            name = ""
        peak = max(s["peak_rss"] for s in r["steps"].values())
        lines.append(f"| | **all steps** | | | | | **{gib(peak)}** |" + (" |" if gpu else "")
                     + f" **{duration(totals[0])}** | **{duration(totals[1])}** |")
    names = list(results[0]["sizes"])
    sizes = ["", "| artifact sizes | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in results:
        d = r["dataset"]
        sizes.append(f"| {d['n_users'] or 0:,} u, {d['n_items'] or 0:,} i, {d['text_dim']}-d | "
                     + " | ".join(f"{r['sizes'][k] / 2**20:,.1f} MiB" for k in names) + " |")
    return "\n".join(lines + sizes)


def sweep_table(summary: dict) -> str:
    out = []
    for axis, pts in summary["points"].items():
        keys = list(pts[0][1])
        out += [f"| {axis} × | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for f, m in pts:
            out.append(f"| {f} | " + " | ".join(gib(m.get(k)) if k.endswith("RSS") else sec(m.get(k)) for k in keys)
                       + " |")
        exps = summary["exponents"][axis]
        out.append("| **exponent** | " + " | ".join("-" if exps[k] is None else f"**{exps[k]:.2f}**" for k in keys)
                   + " |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` stops the running step as well
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        return child(Path(sys.argv[2]), sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in ("run", "sweep"):
        p = verbs.add_parser(verb)
        p.add_argument("--users", type=int, default=25_000)
        p.add_argument("--items", type=int, default=10_000)
        p.add_argument("--interactions", type=int, default=250_000)
        p.add_argument("--dim", type=int, default=384, help="text width")
        p.add_argument("--epochs", type=int, default=1, help="training epochs per phase (0: the defaults)")
        p.add_argument("--threads", type=int, default=1, help="torch threads per step")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--rss-cap", type=float, default=20.0, help="GiB; a step above it is stopped")
        p.add_argument("--work", default="/work/runs/scale")
    run = verbs.choices["run"]
    run.add_argument("--preset", choices=sorted(PRESETS), help="users, items and interactions of a paper dataset")
    run.add_argument("--source", help="a pad source (e.g. prime_pantry) with MiniLM text instead of a synthetic log")
    run.add_argument("--device", default="cpu", help="training device: cpu | cuda")
    run.add_argument("--label", help="folder name of the run under --work")
    run.add_argument("--skip", nargs="+", default=[], choices=("analyze", "recommend"), help="steps not to run")
    run.add_argument("--reuse", nargs="+", default=[], choices=("preprocess", "embed", *PHASES, "analyze"),
                     help="take these steps from the run folder's earlier result.json instead of running them")
    run.add_argument("--reuse-from", type=Path, help="take --reuse steps from this run folder instead (linked)")
    for p in verbs.choices.values():
        p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                       help="a training option for every phase, e.g. valid_users=20000")
    verbs.choices["sweep"].add_argument("--factors", type=int, nargs="+", default=[1, 2, 4, 8])
    verbs.choices["sweep"].add_argument("--axes", nargs="+", choices=("users", "items"), default=["users", "items"],
                                        help="users: users (and interactions) x factor; items: items x factor")
    p = verbs.add_parser("table")
    p.add_argument("results", nargs="+", help="result.json files of `run`")
    args = parser.parse_args()
    if args.verb == "table":
        results = [json.loads(Path(f).read_text()) for f in args.results]
        for f, r in zip(args.results, results):
            add_phase_figures(Path(f).parent, r["steps"])  # with this version's reading of the timings
        print(scenario_table(results))
    elif args.verb == "sweep":
        sweep(args)
    else:
        users, items, inter = PRESETS[args.preset] if args.preset else (args.users, args.items, args.interactions)
        spec = None if args.source else Spec(users, items, inter, args.dim, seed=args.seed)
        label = args.label or (args.source and args.source.replace(":", "-")) or (
            f"{args.preset}-{args.dim}" if args.preset else "")
        result = run_scenario(spec, Path(args.work), args.epochs, args.threads, args.rss_cap * GIB, label,
                              args.device, args.source or "", tuple(args.skip), tuple(args.reuse),
                              tuple(args.options), args.reuse_from)
        print(scenario_table([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
