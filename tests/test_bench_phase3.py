"""bench/phase3.py: each fit runs in its own process with the checkout it names."""

import json
from pathlib import Path

import pytest

from clustered import clustered_world
from conftest import bench_module
from padcore import training
from test_training import FAST, write_text


@pytest.fixture(scope="module")
def phase3():
    with bench_module("phase3") as module:
        yield module


def test_a_fit_runs_with_the_named_checkouts_padcore(phase3, tmp_path):
    dataset, table = clustered_world(tmp_path / "dataset")
    write_text(tmp_path / "text", table, dataset)
    training.pretrain(tmp_path / "dataset", tmp_path / "m1", **dict(FAST, epochs=2))
    training.align(tmp_path / "dataset", tmp_path / "text", tmp_path / "m1", tmp_path / "m2")
    checkout = tmp_path / "checkout"  # another checkout: here, the same padcore under another folder
    checkout.mkdir()
    (checkout / "padcore").symlink_to(Path(phase3.ROOT).parent / "padcore")
    paths = [str(tmp_path / p) for p in ("dataset", "text", "m1", "m2")]
    r = phase3.finetune(checkout, paths, {"experts": "id,sim,tuned", "threads": 1}, tmp_path / "m3")
    assert r["padcore"].startswith(str(checkout))  # not the working directory's, which `python -c` puts first
    m = json.loads((tmp_path / "m3" / "metrics.json").read_text())
    assert r["test"] == [m["test"]["hr@10"], m["test"]["ndcg@10"]]
    assert r["epochs"] == m["epochs"] >= 2 and set(r["own"]) == {"tuned"}
    assert 0 < r["folds"] < r["wall"] and r["rss_gib"] > 0
    with pytest.raises(SystemExit, match="failed"):
        phase3.finetune(checkout, paths, {"experts": "id,nope"}, tmp_path / "m4")
