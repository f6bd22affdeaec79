"""bench/quality.py: its table and targets from the runs' metrics, against NumPy on made-up numbers."""

import re

import numpy as np
import pytest

from conftest import bench_module


@pytest.fixture(scope="module")
def quality():
    with bench_module("quality") as module:
        yield module


def fake(hr: float, ndcg: float, cold: float, **extra) -> dict:
    groups = {g: {"hr@10": cold if g == "cold" else hr, "ndcg@10": ndcg} for g in ("warm", "median", "cold")}
    return {"test": {"hr@10": hr, "ndcg@10": ndcg, "groups": groups}, **extra}


def runs(quality, seeds=(0, 1, 2)):
    g = np.random.default_rng(0)
    out = {}
    for s in seeds:
        rows = {row: fake(*g.uniform(1, 10, 3)) for row in quality.ROWS}
        rows["PAD"].update(fusion={"best_epochs": [s + 1, s + 2]}, tuned_expert={"best_epoch": 10 + s})
        out[s] = rows
    return out


def test_targets_are_the_gaps_and_twice_the_pooled_std(quality):
    r = runs(quality)
    row = quality.targets("World, BCE", r).splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    pad = np.array([r[s]["PAD"]["test"]["hr@10"] for s in r])
    for col, control in ((1, "PAD, fused"), (2, "PAD, fused, tuned expert trained"), (4, "2 SASRecs + alignment expert"),
                         (5, "SASRec + text similarity + tuned similarity")):
        other = np.array([r[s][control]["test"]["hr@10"] for s in r])
        gap, spread = map(float, re.match(r"([-+\d.]+) \(([\d.]+)\)", cells[col]).groups())
        assert gap == pytest.approx(pad.mean() - other.mean(), abs=0.006)
        assert spread == pytest.approx(2 * np.sqrt((pad.var(ddof=1) + other.var(ddof=1)) / 2), abs=0.006)
    sasrec3 = np.array([r[s]["SASRec x3"]["test"]["hr@10"] for s in r])
    assert cells[3].startswith(f"{pad.mean() / sasrec3.mean():.2f} ")
    fused = np.array([r[s]["PAD, fused"]["test"]["hr@10"] for s in r])
    assert cells[6] == ", ".join(f"{d:+.2f}" for d in pad - fused)
    assert cells[7] == "1/2; 10, 2/3; 11, 3/4; 12"  # per seed: each fold's best epoch; the tuned expert's


def test_the_table_holds_every_row_with_its_mean_and_ratio(quality):
    r = runs(quality)
    lines = quality.table(r).splitlines()[2:]
    assert [line.split("|")[1].strip().strip("*") for line in lines] == list(quality.ROWS)
    pad = np.array([r[s]["PAD"]["test"]["ndcg@10"] for s in r])
    ref = np.mean([r[s]["SASRec x3"]["test"]["ndcg@10"] for s in r])
    cells = [c.strip() for c in lines[-1].strip("|").split("|")]
    assert cells[2] == f"{pad.mean():.2f} ± {pad.std(ddof=1):.2f}"
    assert cells[-1].split(" / ")[1] == f"{pad.mean() / ref:.2f}"
