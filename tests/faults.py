"""Crash harness: pad's step commands killed with SIGKILL at many points, then rerun.

A command (`pad pretrain ...`) runs as a child process, started either fresh
(`exec`: `python tests/faults.py <pad argv>`) or forked from a server that
imported pad once (`fork`: the same `pad.cli.main`, without paying torch's
import on every start, which keeps many kills cheap enough for CI). Either way
the child is a real process and is stopped by a real SIGKILL:

- at a *write point*: an audit hook (`sys.addaudithook`) in the child sees every
  file-system change under the work folder (open for writing, rename, remove,
  mkdir, rmtree, ...), and stops the child (SIGSTOP) just before the first one
  at a site not yet covered; the harness checks the artifact while the writer is
  frozen there, then kills it;
- at a seeded random time within an uninterrupted run's wall time.

After every kill the command's `--out` must be absent, or load with pad's own
readers and equal the uninterrupted run's artifact; the rerun that finally
completes must give exactly the uninterrupted run's artifact (weights, metrics
less wall times); nothing may be left beside `--out`.

`python tests/faults.py --report [--kills N] [--exec]` runs every command and
prints the table of bench/RESULTS.md ("Reliability"); tests/test_faults.py runs
the CI size.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve()
# the audit events of file-system changes the hook watches: how many of their first arguments are paths (str,
# bytes or PathLike), and for the removals the argument that holds the folder's fd the path is relative to
EVENTS = {"open": 1, "os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.link": 2, "os.truncate": 1,
          "shutil.rmtree": 1, "shutil.copyfile": 2, "tempfile.mkdtemp": 1}
DIR_FD = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 2}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
ENV_ROOT, ENV_SKIP, ENV_MARK = "PAD_FAULTS_ROOT", "PAD_FAULTS_SKIP", "PAD_FAULTS_MARK"
ENV_IN_PLACE = "PAD_FAULTS_IN_PLACE"
TIMEOUT = 300.0  # a child that runs longer has hung


# ---------------------------------------------------------------- in the child


def _path(arg, dir_fd: int | None) -> str | None:
    if isinstance(arg, int):  # an open file descriptor
        return None
    path = os.fsdecode(os.fspath(arg))
    if not os.path.isabs(path) and dir_fd is not None and dir_fd >= 0:
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)  # shutil.rmtree removes relative to a fd
    return os.path.abspath(path)


def site(event: str, paths: list[str], root: str) -> str:
    """A write point's name: the event and its paths under `root`, without the random or per-process parts.

    The removals inside a folder being deleted count as one write point.
    """
    names = [re.sub(r"(tmp|old)-[^/]*", r"\1-*", p[len(root):].lstrip("/")) for p in paths]
    if event in ("os.remove", "os.rmdir"):
        names = [re.sub(r"((tmp|old)-\*)/.+", r"\1/...", n) for n in names]
    return f"{event} {' -> '.join(names)}"


def install_hook() -> None:
    """Stop this process (SIGSTOP) before its first file-system change under $PAD_FAULTS_ROOT at a site not
    listed in $PAD_FAULTS_SKIP, after writing the site's name to $PAD_FAULTS_MARK."""
    root, mark = os.environ.get(ENV_ROOT), os.environ.get(ENV_MARK)
    if not root or not mark:
        return
    skip = set(json.loads(os.environ.get(ENV_SKIP, "[]")))
    busy = False

    def hook(event: str, args: tuple) -> None:
        nonlocal busy
        if event not in EVENTS or busy:
            return
        if event == "open" and args[2] & WRITE_FLAGS == 0:
            return
        dir_fd = args[DIR_FD[event]] if event in DIR_FD else None
        paths = [p for p in (_path(a, dir_fd) for a in args[:EVENTS[event]]) if p]
        if not any(p == root or p.startswith(root + os.sep) for p in paths):
            return
        name = site(event, paths, root)
        if name in skip:
            return
        busy = True  # the marker's own open is an audited event
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, name.encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGSTOP)

    sys.addaudithook(hook)


def child_main(argv: list[str]) -> int:
    install_hook()
    if os.environ.get(ENV_IN_PLACE):
        _write_datasets_in_place()
    from pad.cli import main

    return main(argv)


def _write_datasets_in_place() -> None:
    """The harness's self-test: dataset artifacts written straight into `--out`, as a careless writer would."""
    import contextlib

    import padcore.dataset

    @contextlib.contextmanager
    def in_place(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        yield Path(out)

    padcore.dataset.atomic_dir = in_place


def serve() -> None:
    """The fork server: import pad's heavy modules once, then fork a child per request (JSON lines on stdin).

    {"start": argv, "env": {...}, "log": path} -> {"pid": pid}; {"poll": pid} -> {"status": None | code};
    a code below 0 is the signal that ended the child.
    """
    import pad.cli  # noqa: F401
    import padcore.analysis  # noqa: F401
    import padcore.training  # noqa: F401
    import padcore.sources  # noqa: F401
    import padcore.text  # noqa: F401
    import torch._dynamo  # noqa: F401  (torch's optimizers import it on first use: seconds per child otherwise)
    from transformers import AutoModel, AutoTokenizer, BertModel  # noqa: F401  (the encoder of the embed runs)

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    done: dict[int, int] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if "start" in req:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    os.environ.update(req["env"])
                    code = child_main(req["start"])
                except BaseException:  # noqa: BLE001  (reported in the child's log, as a traceback)
                    import traceback

                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            reply = {"pid": pid}
        else:
            pid = req["poll"]
            if pid not in done:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got:
                    done[pid] = os.waitstatus_to_exitcode(status)
            reply = {"status": done.get(pid)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- the harness side


class Launcher:
    """Starts pad commands as child processes (`fork` from a server, or `exec` fresh) and polls them."""

    def __init__(self, mode: str, env: dict[str, str]):
        self.mode, self.env = mode, {**os.environ, **env}
        self.server = None
        if mode == "fork":
            self.server = subprocess.Popen([sys.executable, str(HERE), "--serve"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, env=self.env)
            if self.server.stdout.readline() != "ready\n":
                raise AssertionError(f"the fork server did not start (exit {self.server.wait()})")
        self.procs: dict[int, subprocess.Popen] = {}

    def _ask(self, req: dict) -> dict:
        self.server.stdin.write(json.dumps(req) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        if self.server:
            return self._ask({"start": argv, "env": env, "log": str(log)})["pid"]
        with open(log, "ab") as f:
            p = subprocess.Popen([sys.executable, str(HERE), *argv], env={**self.env, **env}, stdout=f,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[p.pid] = p
        return p.pid

    def poll(self, pid: int) -> int | None:
        if self.server:
            return self._ask({"poll": pid})["status"]
        return self.procs[pid].poll()

    def close(self) -> None:
        if self.server:
            self.server.stdin.close()
            self.server.wait(timeout=30)


@dataclass
class Command:
    """A pad step command whose artifact at `out` the harness compares."""

    name: str
    argv: list[str]  # without --out
    out: Path
    read: Callable[[Path], object]  # the artifact through pad's readers, as something comparable with ==
    env: dict[str, str] = field(default_factory=dict)

    @property
    def full_argv(self) -> list[str]:
        return [*self.argv, "--out", str(self.out)]


@dataclass
class Tally:
    """What one command's crash run did and found."""

    kills_at_write_points: int = 0
    kills_at_random_times: int = 0
    chains: int = 0
    reruns_completed: int = 0
    resumed: int = 0  # runs that went on from a checkpoint a killed run had saved
    artifact_checks: int = 0  # `out` read while a writer was frozen or dead
    sites: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return self.kills_at_write_points + self.kills_at_random_times


def leftovers(out: Path) -> list[str]:
    """What a finished step must not leave beside its artifact: temporary or superseded folders."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


class Harness:
    def __init__(self, launcher: Launcher, root: Path):
        self.launcher, self.root = launcher, root

    def run(self, cmd: Command, skip: set[str] | None = None, kill_after: float | None = None,
            on_freeze: Callable[[str], None] | None = None) -> tuple[str, str | None, float]:
        """Run `cmd` once: ("done", exit code...), ("frozen", site) then killed, or ("killed", None) at `kill_after`.

        Returns (how it ended, the site it froze at, its wall seconds).
        """
        mark = self.root / "freeze-mark"
        mark.unlink(missing_ok=True)
        env = dict(cmd.env)
        if skip is not None:
            env.update({ENV_ROOT: str(self.root), ENV_MARK: str(mark), ENV_SKIP: json.dumps(sorted(skip))})
        log = self.root / f"{cmd.name}.log"
        t0 = time.perf_counter()
        pid = self.launcher.start(cmd.full_argv, env, log)
        while True:
            status = self.launcher.poll(pid)
            if status is not None:
                if status != 0:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{cmd.name} exited {status} on its own:\n{tail}")
                return "done", None, time.perf_counter() - t0
            elapsed = time.perf_counter() - t0
            if mark.is_file() and mark.stat().st_size:
                where = mark.read_text()
                if on_freeze:
                    on_freeze(where)  # the writer is frozen just before this write
                self._kill(pid)
                return "frozen", where, elapsed
            if kill_after is not None and elapsed >= kill_after:
                if self._kill(pid) == 0:  # it finished just before the signal
                    return "done", None, elapsed
                return "killed", None, elapsed
            if elapsed > TIMEOUT:
                self._kill(pid)
                raise AssertionError(f"{cmd.name} hung: still running after {TIMEOUT:.0f} s")
            time.sleep(0.002)

    def _kill(self, pid: int) -> int:
        """SIGKILL the child; its exit status (0 if it had just finished)."""
        os.kill(pid, signal.SIGKILL)
        while (status := self.launcher.poll(pid)) is None:
            time.sleep(0.002)
        if status not in (0, -signal.SIGKILL):
            raise AssertionError(f"child {pid} ended with {status}, not by the SIGKILL it was sent")
        return status


STARTS = ("nothing", "a finished artifact")  # what a chain of kills starts from (a first run, or a rerun)


def reset(cmd: Command, start: str, reference_dir: Path) -> None:
    """A fresh chain: the command's folder (out, its work folders, its cache) emptied, or holding the reference."""
    shutil.rmtree(cmd.out.parent, ignore_errors=True)
    cmd.out.parent.mkdir(parents=True)
    if start == STARTS[1]:
        shutil.copytree(reference_dir, cmd.out)


def check_artifact(cmd: Command, reference: object, tally: Tally, when: str) -> None:
    """`out` is absent, or reads back whole and equal to the uninterrupted run's artifact."""
    tally.artifact_checks += 1
    if not cmd.out.exists():
        return
    try:
        got = cmd.read(cmd.out)
    except Exception as exc:  # noqa: BLE001  (any failure to read a present artifact is the finding)
        tally.problems.append(f"{when}: {cmd.out} is present but unreadable: {type(exc).__name__}: {exc}")
        return
    if got != reference:
        tally.problems.append(f"{when}: {cmd.out} is present but differs from the uninterrupted run's")


def crash(harness: Harness, cmd: Command, reference_dir: Path, seconds: float, kills: int, seed: int) -> Tally:
    """Kill `cmd` at least `kills` times, rerunning it until it completes, chain after chain; check everything.

    Chains start alternately from nothing and from a finished artifact (a rerun
    over it). Kills go first to every write point not yet covered, until a whole
    run from each start passes none; then to seeded random times in [0, `seconds`]
    (an uninterrupted run's wall time), a quarter of `kills` at least. A chain
    ends with a completed run, whose artifact must equal `reference_dir`'s with
    nothing left beside it.
    """
    reference = cmd.read(reference_dir)
    log = harness.root / f"{cmd.name}.log"
    resumes_before = _resumes(log)
    rng = random.Random(seed)
    tally = Tally()
    covered: set[str] = set()
    explored: set[str] = set()  # starts from which a whole run meets no uncovered write point
    chains = 0
    def enough() -> bool:
        return (tally.kills >= kills and len(explored) == len(STARTS)
                and tally.kills_at_random_times >= (kills + 3) // 4)

    while not enough():
        start = STARTS[chains % len(STARTS)]
        chains += 1
        reset(cmd, start, reference_dir)
        for attempt in itertools.count():
            done = enough()
            if done:
                how, where, _ = harness.run(cmd)
            elif start not in explored:
                how, where, _ = harness.run(cmd, skip=covered, on_freeze=lambda s: check_artifact(
                    cmd, reference, tally, f"frozen before {s}"))
            else:
                how, where, _ = harness.run(cmd, kill_after=rng.uniform(0, seconds))
            if how == "done":
                if attempt == 0 and not done:
                    explored.add(start)
                _finished(cmd, reference, tally, f"the completing run of chain {chains} (from {start})")
                break
            if how == "frozen":
                covered.add(where)
                tally.sites.append(where)
                tally.kills_at_write_points += 1
            else:
                tally.kills_at_random_times += 1
                check_artifact(cmd, reference, tally, f"after random kill {tally.kills_at_random_times}")
    tally.chains = chains
    tally.resumed = _resumes(log) - resumes_before
    return tally


def _resumes(log: Path) -> int:
    return log.read_text(errors="replace").count("resuming after epoch") if log.exists() else 0


def _finished(cmd: Command, reference: object, tally: Tally, what: str) -> None:
    tally.reruns_completed += 1
    if not cmd.out.exists():
        tally.problems.append(f"{what} exited 0 but wrote no {cmd.out}")
        return
    check_artifact(cmd, reference, tally, what)
    left = leftovers(cmd.out)
    if left:
        tally.problems.append(f"{what} left {left} beside {cmd.out}")


# ---------------------------------------------------------------- the commands and their readers

TIMINGS = {"wall_seconds", "seconds_per_epoch", "seconds", "items_per_second"}  # differ from run to run


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def read_dataset(path: Path) -> tuple:
    from padcore.dataset import load_dataset

    ds = load_dataset(path)
    return json.dumps(ds.meta, sort_keys=True), ds.items.to_json(), ds.users.tolist(), ds.flat.tobytes(), \
        ds.offsets.tobytes()


def text_reader(dataset: Path) -> Callable[[Path], tuple]:
    def read(path: Path) -> tuple:
        from padcore.text import load_text, read_text_meta

        meta = _without_timings(read_text_meta(path))
        meta.pop("reused_from", None)  # a rerun may take the table from the cache
        return json.dumps(meta, sort_keys=True), load_text(path, dataset).tobytes()

    return read


def model_reader(dataset: Path, phase: str, text: Path | None) -> Callable[[Path], tuple]:
    """A model artifact as the next step reads it: meta checked against the dataset, weights loaded."""

    def read(path: Path) -> tuple:
        from padcore.checkpoint import load_model, read_model_meta
        from padcore.dataset import load_dataset
        from padcore.text import load_text

        ds = load_dataset(dataset)
        meta, config = read_model_meta(path, ds, phase)
        model = load_model(path, None if text is None else load_text(text, ds))
        weights = {k: v.numpy().tobytes() for k, v in model.state_dict().items()}
        metrics = _without_timings(json.loads((path / "metrics.json").read_text()))
        return json.dumps(meta, sort_keys=True), json.dumps(config, sort_keys=True), \
            json.dumps(metrics, sort_keys=True), weights

    return read


COMMANDS = ["preprocess", "embed", "pretrain", "align", "finetune"]
TRAINING = ["--dim", "8", "--epochs", "4", "--batch-size", "32", "--patience", "10", "--device", "cpu",
            "--set", "layers=1", "--set", "threads=1"]


def commands(root: Path, source: Path) -> list[Command]:
    """The five step commands, each reading the artifacts of the uninterrupted runs before it (`root/ref`)."""
    ref = root / "ref"
    ds, text, m1, m2 = ref / "preprocess", ref / "embed", ref / "pretrain", ref / "align"

    def out(name: str) -> Path:
        return root / "work" / name / "out"

    encoder = f"hf:{root / 'tiny-bert'}"  # what embed writes matters here, not which encoder: a small one is quick

    return [
        Command("preprocess", ["preprocess", "--source", f"files:{source}", "--buckets", "5"], out("preprocess"),
                read_dataset),
        Command("embed", ["embed", "--dataset", str(ds), "--encoder", encoder, "--batch-size", "16", "--device", "cpu"],
                out("embed"),
                text_reader(ds), env={"PAD_DATA_HOME": str(out("embed").parent / "home")}),
        Command("pretrain", ["pretrain", "--dataset", str(ds), *TRAINING], out("pretrain"),
                model_reader(ds, "pretrain", None)),
        Command("align", ["align", "--dataset", str(ds), "--text", str(text), "--id-model", str(m1), *TRAINING],
                out("align"), model_reader(ds, "align", text)),
        Command("finetune", ["finetune", "--dataset", str(ds), "--text", str(text), "--id-model", str(m1),
                             "--align-model", str(m2), *TRAINING], out("finetune"), model_reader(ds, "finetune", text)),
    ]


def reference(harness: Harness, cmd: Command) -> tuple[Path, float]:
    """One uninterrupted run of `cmd`, kept as `root/ref/<name>`; returns its folder and wall seconds."""
    reset(cmd, STARTS[0], Path())
    _, _, seconds = harness.run(cmd)
    kept = harness.root / "ref" / cmd.name
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(cmd.out, kept)
    return kept, seconds


# ---------------------------------------------------------------- full disks


def files_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path: an artifact byte for byte."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_with_file_limit(cmd: Command, limit: int, extra: list[str] = ()) -> subprocess.CompletedProcess:
    """`cmd` (plus `extra` arguments) as a fresh process whose files may not grow past `limit` bytes (RLIMIT_FSIZE)."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # output through pipes: the limit is on files, and a log file would hit it too
    return subprocess.run([sys.executable, str(HERE), *cmd.argv, *extra, "--out", str(cmd.out)], env={
        **os.environ, "OMP_NUM_THREADS": "1", **cmd.env}, capture_output=True, text=True, preexec_fn=limited,
        timeout=TIMEOUT)


def run_on_small_filesystem(cmd: Command, size: int, seed: Path | None, extra: list[str] = ()) -> dict | None:
    """`cmd` writing to a `size`-byte tmpfs (in a user and mount namespace of its own), over a copy of `seed`.

    Returns {"rc", "stderr", "before", "after", "leftovers"} (file digests of `--out` before and after), or
    None where this machine cannot make such a file system (no `unshare`, or user namespaces disabled).
    """
    folder = cmd.out.parent / "small-fs"
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"size": size, "folder": str(folder), "seed": str(seed or ""),
                       "argv": [*cmd.argv, *extra], "env": cmd.env})
    if not shutil.which("unshare"):
        return None
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(HERE), "--tmpfs", spec],
                       capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode == 77:
        return None
    if p.returncode != 0:
        raise AssertionError(f"the small file system run failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.splitlines()[-1])


def _on_tmpfs(spec: dict) -> int:
    """In the namespace: mount the tmpfs, put the seed artifact on it, run the command, report as JSON."""
    folder = Path(spec["folder"])
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={spec['size']}", "tmpfs", str(folder)]).returncode:
        return 77
    out = folder / "out"
    if spec["seed"]:
        shutil.copytree(spec["seed"], out)
    before = files_digest(out) if out.exists() else {}
    p = subprocess.run([sys.executable, str(HERE), *spec["argv"], "--out", str(out)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **spec["env"]}, timeout=TIMEOUT)
    after = files_digest(out) if out.exists() else {}
    print(json.dumps({"rc": p.returncode, "stderr": p.stderr, "before": before, "after": after,
                      "leftovers": leftovers(out)}))
    return 0


def prepare(root: Path, mode: str) -> tuple[Harness, list[Command], dict[str, tuple[Path, float]]]:
    """A small synthetic source under `root`, a launcher, and the uninterrupted (reference) run of every command."""
    from conftest import _synthetic_raw, save_tiny_bert

    raw = _synthetic_raw(n_users=120, n_items=40, seed=3)
    source = root / "source"
    source.mkdir(parents=True, exist_ok=True)
    raw.interactions.to_csv(source / "interactions.csv", index=False)
    raw.items.to_csv(source / "items.csv", index=False)
    save_tiny_bert(root / "tiny-bert", raw.items["text"].tolist())
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # the same float sums in every run
    harness = Harness(Launcher(mode, threads), root)
    cmds = commands(root, source)
    refs = {cmd.name: reference(harness, cmd) for cmd in cmds}
    return harness, cmds, refs


def report(kills: int, mode: str, seed: int, names: list[str]) -> str:
    """The commands `names` crashed `kills` times each: the table of bench/RESULTS.md."""
    import platform
    import tempfile

    rows = ["| command | kills at write points | kills at random times | chains | completed reruns | runs resumed from "
            "a checkpoint | artifact checks | problems | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="pad-faults-") as tmp:
        harness, cmds, refs = prepare(Path(tmp), mode)
        try:
            for cmd in (c for c in cmds if c.name in names):
                t0 = time.perf_counter()
                tally = crash(harness, cmd, *refs[cmd.name], kills=kills, seed=seed)
                rows.append(f"| pad {cmd.name} | {tally.kills_at_write_points} | {tally.kills_at_random_times} | "
                            f"{tally.chains} | {tally.reruns_completed} | {tally.resumed} | {tally.artifact_checks} | "
                            f"{len(tally.problems)} | {time.perf_counter() - t0:.0f} |")
                for problem in tally.problems:
                    rows.append(f"<!-- {cmd.name}: {problem} -->")
                print(rows[-1], f"\n  write points: {tally.sites}", file=sys.stderr, flush=True)
        finally:
            harness.launcher.close()
    head = f"{mode} mode, seed {seed}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    return "\n".join([head, "", *rows])


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Crash every pad step command at many points; print the table.")
    parser.add_argument("--kills", type=int, default=100, help="kills per command, at least (default 100)")
    parser.add_argument("--exec", action="store_true", help="start each run as a fresh python (slower; default fork)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", nargs="+", default=COMMANDS, choices=COMMANDS, help="default: all five")
    args = parser.parse_args(argv)
    print(report(args.kills, "exec" if args.exec else "fork", args.seed, args.commands))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    elif sys.argv[1:2] == ["--report"]:
        sys.exit(main(sys.argv[2:]))
    elif sys.argv[1:2] == ["--tmpfs"]:
        sys.exit(_on_tmpfs(json.loads(sys.argv[2])))
    else:
        sys.exit(child_main(sys.argv[1:]))
