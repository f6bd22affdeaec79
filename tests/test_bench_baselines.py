"""bench/baselines.py: the parts it splits Hybrid's and DisCo's item vectors into add up to the models' own vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustered import clustered_world
from conftest import bench_module
from padcore import training
from padcore.checkpoint import load_model
from padcore.text import EMBEDDINGS
from test_registry import TINY
from test_training import write_text


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    dataset, table = clustered_world(root / "dataset", n_users=120)
    write_text(root / "text", table, dataset)
    text = np.load(root / "text" / EMBEDDINGS)
    out = {}
    for name in ("hybrid", "disco"):
        training.train(name, root / "dataset", root / "text", root / name, **TINY)
        out[name] = load_model(root / name, text)
    return out


@pytest.mark.parametrize("name", ["hybrid", "disco"])
def test_the_parts_add_up_to_the_item_vectors(models, name):
    with bench_module("baselines") as baselines, torch.no_grad():
        model = models[name]
        parts = baselines.contributions(model)
        assert [k.split()[0] for k in parts] == (["ID", "text"] if name == "hybrid" else ["ID", "ID", "text", "text"])
        tower = model.experts[name].tower
        want = tower(torch.arange(1, tower.rows)).numpy()
        got = (sum(parts.values()) + tower.project.bias).numpy()  # linear: no GELU after the projection
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
