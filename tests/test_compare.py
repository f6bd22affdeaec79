"""Champion vs challenger: the challenger as evaluation ranks it, the champion against a brute force over the
items it knows (last month's model lacks this month's new items), and the decision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pad.cli import main
from padcore.compare import compare, decide
from padcore.dataset import load_dataset
from padcore.metrics import hit_ndcg
from padcore.recommend import ranker_from_version
from padcore.store import Store
from shop import NEW_ITEMS


@pytest.fixture
def champion_store(tmp_path, shop):
    store = Store(tmp_path / "store")
    store.publish(shop["old_model"], shop["old_dataset"], shop["old_text"])
    return store


def brute_force_champion(store: Store, ds) -> tuple[float, float, int]:
    """HR@10 and nDCG@10 (%) of the champion on the test split, user by user, by item id."""
    ranker = ranker_from_version(store.open())
    known = {k: i for i, k in enumerate(ranker.keys) if i}
    key = ds.item_column("item")
    hits, ndcgs, new_targets = [], [], 0
    for n in range(ds.n_users):
        seq = [key[i] for i in ds.sequence(n)]
        history, target = seq[:-1], seq[-1]
        inputs = [known[k] for k in history if k in known][-ranker.max_len :]
        if target not in known:
            new_targets += 1
            rank = 10**9  # an item the champion never saw can never be its hit
        elif target in history or not inputs:
            rank = 10**9
        else:
            with torch.no_grad():
                scores = ranker.model.scores(torch.tensor([inputs]))[0].numpy()
            candidates = [i for k, i in known.items() if k not in set(history)]
            rank = sum(scores[i] > scores[known[target]] for i in candidates)
        hit, ndcg = hit_ndcg(np.array([rank]), 10)
        hits.append(hit[0])
        ndcgs.append(ndcg[0])
    return 100 * float(np.mean(hits)), 100 * float(np.mean(ndcgs)), new_targets


def test_champion_without_the_new_items(shop, champion_store, tmp_path):
    ds = load_dataset(shop["new_dataset"])
    result = compare(shop["new_dataset"], shop["new_model"], tmp_path / "cmp", text=shop["new_text"],
                     store=champion_store.uri)
    saved = json.loads((shop["new_model"] / "metrics.json").read_text())["test"]
    assert result["challenger"]["hr@10"] == saved["hr@10"] and result["challenger"]["ndcg@10"] == saved["ndcg@10"]
    hr, ndcg, new_targets = brute_force_champion(champion_store, ds)
    assert result["champion"]["hr@10"] == pytest.approx(hr) and result["champion"]["ndcg@10"] == pytest.approx(ndcg)
    targets = ds.item_column("item")[ds.flat[ds.offsets[1:] - 1]]
    assert new_targets == result["test_targets_new_to_champion"] == sum(t in NEW_ITEMS for t in targets) > 0
    assert result["champion_items_known"] == ds.n_items - len(NEW_ITEMS)
    assert result["champion_version"] == champion_store.champion()
    saved = json.loads((tmp_path / "cmp" / "decision.json").read_text())
    assert saved["publish"] == result["publish"] and saved["champion"]["ndcg@10"] == result["champion"]["ndcg@10"]


@pytest.mark.parametrize("champion, new, min_gain, force, publish", [
    (None, 1.0, 0.0, False, True),
    (2.0, 2.0, 0.0, False, False),   # as good is not better
    (2.0, 2.1, 0.0, False, True),
    (2.0, 2.1, 0.06, False, False),
    (2.0, 2.2, 0.05, False, True),
    (2.0, 1.0, 0.0, True, True),
    (0.0, 0.5, 0.5, False, True),
])
def test_decide(champion, new, min_gain, force, publish):
    got, gain, reason = decide(None if champion is None else {"ndcg@10": champion}, {"ndcg@10": new}, min_gain, force)
    assert got is publish and reason
    if champion:
        assert gain == pytest.approx((new - champion) / champion)
    elif champion == 0.0:
        assert math.isinf(gain)


def test_compare_verb(shop, champion_store, tmp_path, capsys):
    base = ["compare", "--dataset", str(shop["new_dataset"]), "--model", str(shop["new_model"]),
            "--text", str(shop["new_text"])]
    assert main([*base, "--store", champion_store.uri, "--min-gain", "100", "--out", str(tmp_path / "a")]) == 0
    assert "keep the champion" in capsys.readouterr().out
    assert main([*base, "--store", champion_store.uri, "--min-gain", "100", "--force", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "decision.json").read_text())["reason"] == "forced"
    assert main([*base, "--out", str(tmp_path / "c")]) == 0
    assert "no champion yet" in capsys.readouterr().out
