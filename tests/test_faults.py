"""Crash tests with real signals: every step command SIGKILLed at its write points and at random times, then rerun.

CI size: `--crash-kills` kills per command (default 20), forked children. A
longer run: `pytest tests/test_faults.py --crash-kills 200 --crash-exec`, or
`python tests/faults.py --report --kills 200 --exec` for the table in
bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from faults import COMMANDS, ENV_IN_PLACE, STARTS, crash, files_digest, leftovers, prepare, reset, run_on_small_filesystem, run_with_file_limit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, pytestconfig):
    """The harness and the uninterrupted run of every command (each later one reads the earlier ones' artifacts)."""
    mode = "exec" if pytestconfig.getoption("crash_exec") else "fork"
    harness, cmds, refs = prepare(tmp_path_factory.mktemp("faults"), mode)
    yield harness, {cmd.name: cmd for cmd in cmds}, refs
    harness.launcher.close()


@pytest.mark.parametrize("name", COMMANDS)
def test_killed_commands_rerun_to_exactly_the_uninterrupted_result(world, pytestconfig, name):
    harness, cmds, refs = world
    kills = pytestconfig.getoption("crash_kills")
    tally = crash(harness, cmds[name], *refs[name], kills=kills, seed=COMMANDS.index(name))
    assert tally.problems == []
    assert tally.kills >= kills and tally.kills_at_random_times > 0
    # every write point was hit: the artifact's own files, and the swap that publishes it
    assert any(s.startswith("os.rename") and s.endswith("/out") for s in tally.sites), tally.sites
    assert any("meta.json" in s for s in tally.sites), tally.sites
    if name in ("pretrain", "align", "finetune"):
        assert any(s.endswith("/resume.pt") for s in tally.sites), "killed while saving a checkpoint"
        assert tally.resumed > 0, "reruns went on from the checkpoints of killed runs"


def test_the_harness_catches_a_writer_that_is_not_atomic(world):
    """Self-test: with dataset artifacts written in place, a kill leaves a half-written one, and it is reported."""
    harness, cmds, refs = world
    careless = dataclasses.replace(cmds["preprocess"], env={ENV_IN_PLACE: "1"})
    tally = crash(harness, careless, *refs["preprocess"], kills=4, seed=0)
    assert any("present but unreadable" in p for p in tally.problems), tally.problems


def test_the_harness_compares_weights_and_metrics(world, tmp_path):
    """Self-test: a model artifact with one weight or one metric changed does not pass for the reference."""
    from safetensors.torch import load_file, save_file

    harness, cmds, refs = world
    cmd, ref = cmds["pretrain"], refs["pretrain"][0]
    weights = shutil.copytree(ref, tmp_path / "weights")
    tensors = load_file(weights / "model.safetensors")
    name = next(iter(tensors))
    tensors[name].view(-1)[0] += 1e-6
    save_file(tensors, weights / "model.safetensors")
    metrics = shutil.copytree(ref, tmp_path / "metrics")
    saved = json.loads((metrics / "metrics.json").read_text())
    saved["test"]["hr@10"] += 1e-9
    (metrics / "metrics.json").write_text(json.dumps(saved))
    assert cmd.read(ref) == cmd.read(shutil.copytree(ref, tmp_path / "copy"))
    assert cmd.read(weights) != cmd.read(ref) and cmd.read(metrics) != cmd.read(ref)


# embed's full disk is the small file system's test below; align and finetune save as pretrain does
FULL = [("preprocess", []), ("pretrain", [])]


@pytest.mark.parametrize("name, extra", FULL, ids=[f[0] for f in FULL])
def test_a_write_past_the_file_size_limit_fails_cleanly_and_keeps_the_previous_artifact(world, name, extra):
    """RLIMIT_FSIZE: every file the rerun writes may grow to 1 KiB only, less than any of its artifact's files."""
    harness, cmds, refs = world
    cmd = cmds[name]
    reset(cmd, STARTS[1], refs[name][0])  # `out` holds a finished artifact; the rerun replaces it
    before = files_digest(cmd.out)
    p = run_with_file_limit(cmd, 1024, extra)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    error = p.stderr.strip().splitlines()[-1]
    assert error.startswith(f"pad {name}: error: {cmd.out}: ") and "File too large" in error, error
    assert files_digest(cmd.out) == before, "the previous artifact is untouched"
    # a training step keeps its finished epochs for the rerun; nothing else is left
    assert leftovers(cmd.out) in ([], [f".{cmd.out.name}.partial"])


def test_a_full_file_system_during_the_embedding_table_fails_cleanly(world):
    """A table written through a memory map onto a full disk would die of SIGBUS; its space is reserved first."""
    harness, cmds, refs = world
    cmd = cmds["embed"]
    reset(cmd, STARTS[0], refs["embed"][0])
    seed = refs["embed"][0]
    pages = sum(-(-p.stat().st_size // 4096) for p in seed.iterdir())
    # room for the previous table and 4 pages more: a 384-d float32 table of 41 rows needs 16
    result = run_on_small_filesystem(cmd, (pages + 4) * 4096, seed, ["--encoder", "minilm", "--dtype", "float32",
                                                                      "--no-cache"])
    if result is None:
        pytest.skip("no user and mount namespaces here (unshare) to make a small file system")
    assert result["rc"] == 2 and "Traceback" not in result["stderr"], (result["rc"], result["stderr"][-3000:])
    error = result["stderr"].strip().splitlines()[-1]
    assert "No space left on device" in error and error.startswith("pad embed: error: "), error
    assert result["after"] == result["before"] and result["leftovers"] == []

