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
                only=["table2", "table3", "fig3", "fig4", "fig5a", "fig5b"])
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
