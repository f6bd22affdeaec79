"""What the benchmarks share: the two datasets, resumable runs, and writing bench/RESULTS.md sections."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np

from padcore import steps
from padcore.artifacts import write_json
from padcore.download import data_home

ROOT = Path(__file__).resolve().parent
SOURCES = {"prime_pantry": "prime_pantry", "amazon_scientific": "files:{home}/amazon_scientific"}
TITLES = {"prime_pantry": "Prime Pantry", "amazon_scientific": "Amazon Scientific"}
GROUPS = ("warm", "median", "cold")
# phase 3's expert sets, pinned: a kept run's folder never changes meaning with the default
FIVE = "id,align,llm,sim,tuned"  # PAD (the default)
FOUR = "id,align,llm,sim"  # PAD without the tuned expert


def prepare(work: Path, name: str) -> tuple[Path, Path]:
    """The dataset and MiniLM text artifacts of a benchmark dataset (made once; processes sharing `work` wait for
    the one that makes them)."""
    dataset, text = work / name / "dataset", work / name / "text"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    with open(dataset.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dataset / "meta.json").is_file():
            steps.preprocess(SOURCES[name].format(home=data_home()), dataset)
        if not (text / "meta.json").is_file():
            steps.embed(dataset, text, encoder="minilm")
    return dataset, text


def trained(folder: Path, train: Callable[[Path], object]) -> dict:
    """metrics.json of a model artifact, trained first if it is not finished.

    Several benchmark processes may share a work folder: a lock beside the artifact
    makes one train it while the others wait and then read it.
    """
    if not (folder / "metrics.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / "metrics.json").is_file():
                train(folder)
    return json.loads((folder / "metrics.json").read_text())


def cached(path: Path, compute: Callable[[], dict]) -> dict:
    """The JSON at `path`, computed and written (atomically) if missing."""
    if not path.is_file():
        write_json(path, compute())
    return json.loads(path.read_text())


def cells(m: dict) -> dict[str, float]:
    """Test HR@10 and nDCG@10, overall and per warm / median / cold group, of a metrics.json."""
    t = m["test"]
    out = {"hr@10": t["hr@10"], "ndcg@10": t["ndcg@10"]}
    out.update({f"{g} {k}": t["groups"][g][k] for g in GROUPS for k in ("hr@10", "ndcg@10")})
    return out


def mean_std(values: list[float]) -> str:
    """Mean ± the sample standard deviation over seeds (ddof=1, as the paired and pooled tests use); one seed has no
    spread, so its cell is the value alone."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def machine() -> str:
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, torch CPU"


def commit() -> str:
    """The code measured: the checkout's short commit and its `padcore` tree (the same tree = the same training and
    ranking code, whatever the commit), marked when pad's code differs from them."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT.parent), *args], capture_output=True, text=True).stdout.strip()

    head, tree = git("rev-parse", "--short", "HEAD"), git("rev-parse", "--short", "HEAD:padcore")
    dirty = git("status", "--porcelain", "--", "padcore", "pad", "bench/*.py")
    return f"{head or 'unknown'} (padcore tree {tree or 'unknown'}){' with uncommitted changes' if dirty else ''}"


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


def parse_set(items: list[str]) -> dict:
    """KEY=VALUE options (values as JSON where they parse)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
