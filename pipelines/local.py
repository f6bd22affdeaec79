"""`pad run`: the whole PAD pipeline on this machine with `kfp.local`.

The DAG is the one a cluster runs (same components, same placement file). The
subprocess runner runs each step in this Python environment; the docker runner
runs each step in its placement image on a Docker-API engine (Docker, podman).
Both ignore resources and GPU settings, and the checkpoint volume is left out
because there is no cluster storage here.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from components.reports import dataset_name, model_rows, results_markdown
from padcore.errors import PadError
from padcore.report import tau_summary

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own log lines (kfp==2.17.3) that mark a task's start and end.
STARTED = re.compile(r"^Executing task '([^']+)'")
FINISHED = re.compile(r"^Task '([^']+)' finished with status (\w+)")
CHATTER = re.compile(r"^(Streamed logs:|Task '[^']+' (outputs:|has no outputs)|Cleaned up workspace)")


class StepTimes(logging.Filter):
    """Turns kfp.local's task log records into one start and one end line per step, timed."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[tuple[str, float, str]] = []  # (step, seconds, status) as steps end
        self.started: dict[str, list[float]] = {}  # step -> start times of its running tasks

    def filter(self, record: logging.LogRecord) -> bool:
        msg = ANSI.sub("", record.getMessage())
        if CHATTER.match(msg):
            return False
        if m := STARTED.match(msg):
            self.started.setdefault(m.group(1), []).append(time.perf_counter())
            record.msg, record.args = f"▶ {m.group(1)} started", ()
        elif m := FINISHED.match(msg):
            seconds = time.perf_counter() - self.started[m.group(1)].pop(0)
            self.seconds.append((m.group(1), seconds, m.group(2)))
            mark = "✔" if m.group(2) == "SUCCESS" else "✘"
            record.msg, record.args = f"{mark} {m.group(1)} {m.group(2).lower()} in {seconds:.1f} s", ()
        return True


class QuietStream:
    """Drops the KFP executor's bookkeeping (its input JSON and file notices) from a task's log.

    What the step itself prints (progress, summaries, errors) passes through.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""
        self.json_end: str | None = None  # the line closing the executor-input JSON being skipped
        self.blank = False

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if self.json_end is not None:
            if self.json_end == "":  # the opening brace: its indentation is the closing brace's
                self.json_end = line.rstrip()[:-1] + "}"
            elif line.rstrip() == self.json_end:
                self.json_end = None
            return
        if "[KFP Executor" in line:
            if "Got executor_input" in line:
                self.json_end = ""
            return
        blank = not line.strip()
        if not (blank and self.blank):
            self.stream.write(line + "\n")
        self.blank = blank

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@dataclass
class LocalRun:
    """What a local run produced."""

    run_dir: Path
    outputs: dict[str, Path]  # pipeline output name -> artifact path
    steps: list[tuple[str, float, str]]  # (step, seconds, status), in the order they ended
    wall_seconds: float

    def artifacts(self) -> list[tuple[str, Path]]:
        """Every artifact of every task, as (task/output, path)."""
        found = []
        for executor_output in sorted(self.run_dir.rglob("executor_output.json")):
            task_dir = executor_output.parent
            for path in sorted(task_dir.iterdir()):
                if path.name != "executor_output.json":
                    found.append((f"{task_dir.relative_to(self.run_dir)}/{path.name}", path))
        return found


def _log_handler(stream: TextIO) -> logging.Handler:
    from kfp.local.logging_utils import MillisecondFormatter

    handler = logging.StreamHandler(stream)
    handler.setFormatter(MillisecondFormatter(fmt="%(asctime)s - %(levelname)s - %(message)s", datefmt="%H:%M:%S.%f"))
    return handler


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def free_cores() -> int:
    """CPU cores not busy with other work (cores minus the 1-minute load average), at least 1.

    Each step's torch runs this many threads: more threads than free cores make
    torch's OpenMP workers wait on each other, which on a shared 2-core machine
    made a training epoch 25x slower (152 s with 2 threads against 6 s with 1).
    """
    return max(1, (os.cpu_count() or 1) - round(os.getloadavg()[0]))


RUNNERS = ("subprocess", "docker")


def run_local(
    params: dict[str, Any],
    pairs: list[str] = (),
    out: str | Path = "runs",
    placement_path: str | Path | None = None,
    cache: bool = False,
    verbose: bool = False,
    threads: int | None = None,
    runner: str = "subprocess",
) -> LocalRun:
    """Run the PAD pipeline with `params` and `pairs` (NAME=VALUE, read as the pipeline types them) under
    `kfp.local`; artifacts land in `out/pad-<time>/`.

    `threads`: CPU threads of each step (None = `free_cores()`). `runner`: one of
    RUNNERS; `docker` runs each step in its image from the placement file.
    """
    from kfp import local

    from pipelines.client import check_run, check_types, parse_params
    from pipelines.images import image_refs
    from pipelines.pad_pipeline import build_pipeline
    from pipelines.placement import Volumes, load_placement

    if runner not in RUNNERS:
        raise PadError(f"runner {runner!r}: expected one of {list(RUNNERS)}")
    if threads is not None and threads < 1:
        raise PadError(f"--threads is {threads}; allowed: 1 or more")
    placement = load_placement(placement_path)
    # No cluster storage here, and a failing step fails for good: retries only help a preempted node.
    placement = dataclasses.replace(
        placement, volumes=Volumes(),
        steps={s: dataclasses.replace(p, retries=0) for s, p in placement.steps.items()},
    )
    # the subprocess runner runs every step here; the docker runner in the images docker/build.py recorded
    images = image_refs(placement.targets(), None, allow_unbuilt=runner == "subprocess", placement=placement.source,
                        otherwise="with --no-push for this machine's engine (or run without --runner docker)")
    pipeline = build_pipeline(placement, images, local=True)
    inputs = pipeline.component_spec.inputs or {}
    params = {**params, **parse_params(list(pairs), {name: spec.type for name, spec in inputs.items()})}
    check_types({name: spec.type for name, spec in inputs.items()}, params)
    check_run({name: spec.default for name, spec in inputs.items()}, params, encoders="", store_root="*")
    threads = threads or free_cores()
    thread_env = {name: str(threads) for name in THREAD_VARS}
    if runner == "docker":
        from pipelines.containers import docker_runner, exit_codes_kept, local_folders

        params, folders = local_folders(params)
        task_runner, containers = docker_runner(images, placement.source, folders, thread_env), exit_codes_kept()
    else:
        task_runner, containers = local.SubprocessRunner(use_venv=False), contextlib.nullcontext()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    local.init(runner=task_runner, pipeline_root=str(out), enable_caching=cache)

    where = "each step in its image" if runner == "docker" else "each step a subprocess"
    print(f"[pad run] {where}; {threads} CPU thread(s) per step ({os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; --threads to choose)", flush=True)
    times = StepTimes()
    root = logging.getLogger()
    stdout, level, handlers, print_ = sys.stdout, root.level, root.handlers[:], builtins.print
    environ = {name: os.environ.get(name) for name in THREAD_VARS}
    os.environ.update(thread_env)  # the steps' subprocesses inherit it
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), containers:
            if not verbose:
                # The local runner ignores images and GPU/resource settings and says so per task.
                warnings.filterwarnings("ignore", message=r".*(base image|no effect in the current local runner).*")
                sys.stdout = QuietStream(stdout)
            # kfp.local swaps the root logger's handlers and level per task, which parallel tasks
            # (the embedding shards) undo for each other: keep INFO and a handler of ours underneath.
            root.setLevel(logging.INFO)
            root.handlers = [_log_handler(sys.stdout)]
            root.addFilter(times)
            task = pipeline(**params)
    except RuntimeError as exc:
        failed = sorted({name for name, _, status in times.seconds if status != "SUCCESS"})
        detail = ANSI.sub("", str(exc))
        raise PadError(f"the local pipeline failed at step {', '.join(failed) or '?'} (its log is above): {detail}") from exc
    finally:
        root.removeFilter(times)
        root.setLevel(level)
        root.handlers = handlers
        builtins.print = print_  # kfp.local indents print per task; parallel tasks can leave it indented
        sys.stdout = stdout
        for name, value in environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    outputs = {name: Path(artifact.path) for name, artifact in task.outputs.items()}
    return LocalRun(
        run_dir=outputs["dataset"].parent.parent,
        outputs=outputs,
        steps=times.seconds,
        wall_seconds=time.perf_counter() - t0,
    )


def report(run: LocalRun) -> str:
    """The end-of-run summary: results table, step times, and where every artifact is."""
    models = [run.outputs[k] for k in ("id_model", "align_model", "model")]
    baselines = sorted(path for name, path in run.artifacts() if re.fullmatch(r".*/train/model", name))
    if baselines:  # the leaderboard's order: SASRec, the baselines, then PAD (and its alignment expert)
        models = [models[0], *baselines, models[1], models[2]]
    lines = [f"PAD pipeline finished in {run.wall_seconds / 60:.1f} min; run folder {run.run_dir}", ""]
    lines += ["Test metrics (%, full ranking):", "",
              results_markdown(dataset_name(run.outputs["dataset"]), model_rows(models))]
    kendall = json.loads((run.outputs["analysis"] / "kendall.json").read_text())
    lines += [tau_summary(kendall), f"(full report: {run.outputs['analysis'] / 'report.html'})", ""]
    lines += _store_summary(run)
    lines += ["Step times:"] + [f"  {name:<12} {sec:8.1f} s  {status.lower()}" for name, sec, status in run.steps]
    lines += ["", "Artifacts:"]
    width = max((len(name) for name, _ in run.artifacts()), default=0)
    lines += [f"  {name:<{width}}  {path}" for name, path in run.artifacts()]
    return "\n".join(lines)


def _store_summary(run: LocalRun) -> list[str]:
    """What the compare, publish and recommend steps did, when the run had a store."""
    decision = run.run_dir / "compare" / "comparison" / "decision.json"
    if not decision.is_file():
        return []
    d = json.loads(decision.read_text())
    lines = [f"Model store {d['store']}: {'publish' if d['publish'] else 'keep the champion'} ({d['reason']})"]
    published = run.run_dir / "publish" / "executor_output.json"
    if published.is_file():
        version = json.loads(published.read_text())["parameterValues"]["Output"]
        lines.append(f"  published version {version}")
    recommendations = run.run_dir / "recommend" / "recommendations"
    if recommendations.is_file():
        lines.append(f"  recommendations (Parquet: user, rank, item, score): {recommendations}")
    return lines + [""]
