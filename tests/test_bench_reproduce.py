"""bench/reproduce.py: the file it writes says what a partial run left out."""

import argparse

import pytest

from conftest import bench_module


@pytest.fixture(scope="module")
def reproduce():
    with bench_module("reproduce") as module:
        yield module


def args(**kw) -> argparse.Namespace:
    full = dict(datasets=["prime_pantry", "amazon_scientific"], losses=["bce", "ce"], seeds=[0, 1, 2],
                baselines=["hybrid", "morec", "ctrl", "make", "disco", "smem", "llmesr"],
                only=["table2", "table3", "fig3", "fig4", "fig5a", "fig5b"], figure_seeds=None)
    return argparse.Namespace(**{**full, **kw})


def test_a_full_run_is_not_called_partial(reproduce):
    assert reproduce.missing(args()) == []


def test_every_gap_of_a_partial_run_is_named(reproduce):
    gaps = reproduce.missing(args(only=["table2"], losses=["bce"], seeds=[0], datasets=["prime_pantry"],
                                  baselines=["hybrid", "morec", "ctrl", "make", "disco", "smem"]))
    assert gaps == ["table3", "fig3", "fig4", "fig5a", "fig5b", "dataset Amazon Scientific", "Table 2 with CE",
                    "Table 2's LLM-ESR", "seeds 1, 2"]
    # Table 2's own gaps are not named when Table 2 is not run
    assert "Table 2 with CE" not in reproduce.missing(args(only=["fig4"], losses=["bce"]))


def test_fewer_seeds_for_the_figures_are_named(reproduce):
    assert reproduce.missing(args(figure_seeds=[0])) == ["Table 3 and the figures for seeds 1, 2"]
    assert reproduce.missing(args(figure_seeds=[2, 1, 0])) == []
    assert reproduce.missing(args(seeds=[0], figure_seeds=[0])) == ["seeds 1, 2"]  # said once


def test_wall_time_counts_every_earlier_stage_once(reproduce, tmp_path):
    """PAD's phase 3 is built on phases 1 and 2, and phase 2 on phase 1: phase 1 is counted once."""
    import json

    def stage(name, seconds, parents=()):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"wall_seconds": seconds, "history": []}))
        (folder / "meta.json").write_text(json.dumps({"parents": {p: f"../{p}" for p in parents}}))
        return folder

    stage("pretrain", 100.0)
    stage("align", 20.0, ["pretrain"])
    finetune = stage("finetune", 3.0, ["pretrain", "align"])
    assert reproduce.wall(finetune) == 123.0
    assert reproduce.wall(finetune, chain=False) == 3.0


def test_tables_show_the_sample_std_over_seeds():
    """The ± of every bench table is the seeds' sample std (ddof=1), the one the t-tests and pooled gaps use."""
    import numpy as np

    with bench_module("common") as common:
        values = [12.34, 11.79, 12.01]
        assert common.mean_std(values) == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" == "12.05 ± 0.28"
        assert common.mean_std([6.14]) == "6.14"
