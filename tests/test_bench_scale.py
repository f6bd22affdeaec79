"""bench/scale.py: its synthetic logs have the promised shape and make artifacts pad accepts."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from padcore import steps
from padcore.text import load_text

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["scale"]


@pytest.mark.parametrize("mean", [5.2, 8.6, 15.3, 22.5])
def test_length_parameter_gives_the_mean(scale, mean):
    p = scale.length_parameter(mean)
    lengths = np.minimum(scale.MIN_LEN - 1 + np.random.default_rng(0).geometric(p, 200_000), scale.KEEP_LAST)
    assert abs(lengths.mean() - mean) < 0.05


def test_synthetic_log_shape_and_artifacts(scale, tmp_path):
    spec = scale.Spec(users=2_000, items=500, interactions=20_000, dim=48)
    n = scale.generate(tmp_path / "raw", spec)
    inter = pq.read_table(tmp_path / "raw" / "interactions.parquet").to_pandas()
    lengths = inter.groupby("user").size()
    assert len(inter) == n and abs(n - spec.interactions) < 0.03 * spec.interactions
    assert lengths.min() >= scale.MIN_LEN and lengths.max() <= scale.KEEP_LAST and len(lengths) == spec.users
    counts = inter["item"].value_counts()
    assert len(counts) == spec.items  # every item at least once
    assert counts.iloc[: spec.items // 10].sum() > 0.3 * n  # a popular head: power law, not uniform

    meta = steps.preprocess(f"files:{tmp_path / 'raw'}", tmp_path / "ds")
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (spec.users, spec.items, n)
    scale.write_random_text(tmp_path / "ds", tmp_path / "text", spec.dim, seed=0, chunk=64)
    table = load_text(tmp_path / "text", tmp_path / "ds")
    assert table.shape == (spec.items + 1, spec.dim) and table.dtype == np.float16
    assert not table[0].any() and np.allclose(np.linalg.norm(table[1:].astype(np.float32), axis=1), 1, atol=1e-2)


def test_slope_and_phase_figures(scale):
    assert scale.slope([1, 2, 4, 8], [3, 6, 12, 24]) == pytest.approx(1.0)
    assert scale.slope([1, 2, 4, 8], [5, 5, 5, 5]) == pytest.approx(0.0)
    call = lambda t, c: {"users": 7, "start": t, "end": t + 1, "cpu_start": c, "cpu_end": c + 0.5,  # noqa: E731
                         "max_rss_before": 10 * t, "max_rss_after": 10 * t + 1}
    # two fits (epoch 0, then an epoch of 3 s / 5 s of training), then valid and test of the best model
    history = [{"epoch": 0}, {"epoch": 1}, {"epoch": 0}, {"epoch": 1}]
    calls = [call(0, 0), call(4, 2), call(6, 3), call(12, 5), call(13, 6), call(14, 7)]
    figures = scale.phase_figures({"evals": calls}, history)
    assert figures["train_s_per_epoch"] == pytest.approx(4.0) and figures["train_cpu_s_per_epoch"] == pytest.approx(1.5)
    assert figures["eval_s"] == pytest.approx(1.0) and figures["eval_users"] == 7
    assert figures["valid_s"] == pytest.approx(1.0) and figures["valid_cpu_s"] == pytest.approx(0.5)
    # projected 60 epochs: 60 x 4 s of training, 61 validations and the full valid + test rankings of 1 s each
    assert scale.projected_seconds(figures, "pretrain", cpu=False) == pytest.approx(60 * 4 + 61 + 2)
    # ... validating on 2 of the 7 users; phase 3: 20 epochs, 22 validations of half the users
    assert scale.projected_seconds(figures, "pretrain", cpu=False, valid_users=2) == pytest.approx(240 + 61 * 2 / 7 + 2)
    assert scale.projected_seconds(figures, "finetune", cpu=True) == pytest.approx(20 * 1.5 + 22 * 0.5 * 0.5 + 1)
    assert scale.phase_figures({"evals": calls}, history[:2]) == {}  # calls that do not match the history


def test_a_stopped_run_keeps_its_finished_steps(scale, tmp_path, monkeypatch):
    """result.json is written after every step, so a run stopped in the middle can be resumed with --reuse."""
    def fake_step(name, argv, work, threads, rss_cap):
        if name == "align":
            raise KeyboardInterrupt  # the bench is stopped while phase 2 runs
        return {"wall": 1.0, "peak_rss": 1, "rc": 0, "capped": False}

    monkeypatch.setattr(scale, "run_step", fake_step)
    with pytest.raises(KeyboardInterrupt):
        scale.run_scenario(None, tmp_path, 1, 1, 20.0, label="run", source="prime_pantry")
    kept = json.loads((tmp_path / "run" / "result.json").read_text())["steps"]
    assert list(kept) == ["preprocess", "embed", "pretrain"] and all(s["rc"] == 0 for s in kept.values())
