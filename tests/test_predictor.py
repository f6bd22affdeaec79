"""The serving logic: answers as `pad recommend` gives them, unknown ids reported, champion changes followed,
and a broken champion refused while the loaded one keeps answering."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from padcore.artifacts import sha256_file
from padcore.dataset import load_dataset
from padcore.errors import PadError
from padcore.predictor import Batcher, Predictor
from padcore.steps import recommend
from padcore.store import Store

HISTORIES = [["i1", "i5", "i2"], ["i3"], ["i7", "no-such-item", "i9", "i4", "i11", "i0"], ["unknown-1"], []]


def rewrite_items(folder, change) -> None:
    """Replace a version's item table by `change(items)`, its manifest entry updated to match."""
    items = pq.read_table(folder / "items.parquet").to_pandas()
    change(items).to_parquet(folder / "items.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["items.parquet"]["sha256"] = sha256_file(folder / "items.parquet")
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def served(tmp_path, shop):
    store = Store(tmp_path / "store")
    old = store.publish(shop["old_model"], shop["old_dataset"], shop["old_text"]).version
    predictor = Predictor(store.uri)
    assert predictor.load() == old
    return store, predictor, old


def test_answers_are_those_of_pad_recommend(served, tmp_path):
    store, predictor, old = served
    answers = predictor.predict([{"items": h, "k": 5} for h in HISTORIES])
    rows = [(f"u{n}", item, t) for n, h in enumerate(HISTORIES) for t, item in enumerate(h)]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(tmp_path / "h.csv", index=False)
    recommend(store.open(old), tmp_path / "r.parquet", sequences=str(tmp_path / "h.csv"), k=5)
    rec = pq.read_table(tmp_path / "r.parquet").to_pandas()
    for n, answer in enumerate(answers[:3]):  # the last two know no item: `pad recommend` leaves them out
        mine = rec[rec["user"] == f"u{n}"]
        assert answer["items"] == mine["item"].tolist()
        assert np.allclose(answer["scores"], mine["score"], atol=1e-5)
        assert answer["version"] == old
    assert answers[2]["unknown"] == ["no-such-item"] and len(answers[2]["items"]) == 5
    assert not set(answers[0]["items"]) & set(HISTORIES[0])
    assert all(a["fallback"] is None for a in answers[:3])


def test_a_history_with_no_known_item_gets_the_most_popular_items(served, shop):
    store, predictor, old = served
    items = load_dataset(shop["old_dataset"]).items
    ranked = items.assign(neg=-items["freq"]).sort_values(["neg", "item_idx"])  # reference: count, then item_idx
    for history in (["unknown-1"], []):
        (answer,) = predictor.predict([{"items": history, "k": 7}])
        assert answer["fallback"] == "popular" and answer["unknown"] == history and answer["version"] == old
        assert answer["items"] == ranked["item"].astype(str).head(7).tolist()
        assert answer["scores"] == ranked["freq"].head(7).astype(float).tolist()


def test_a_version_without_item_frequencies_answers_nothing_for_an_unknown_history(served, tmp_path):
    """Versions published before items.parquet carried `freq` still load; they have no fallback."""
    store, predictor, old = served
    rewrite_items(tmp_path / "store" / "versions" / old, lambda items: items.drop(columns="freq"))
    fresh = Predictor(store.uri)
    fresh.load()
    assert fresh.predict([{"items": ["unknown-1"]}])[0] | {"version": ""} == {
        "items": [], "scores": [], "unknown": ["unknown-1"], "fallback": None, "version": ""}
    rewrite_items(tmp_path / "store" / "versions" / old, lambda items: items.assign(freq=-1))
    with pytest.raises(PadError, match=r"items.parquet: column 'freq' must hold counts"):
        Predictor(store.uri).load()


@pytest.mark.parametrize("instances, message", [
    ([], "non-empty list"),
    ({"items": []}, "non-empty list"),
    ([{"item": ["i1"]}], "instances[0]: expected an object"),
    ([{"items": ["i1"]}, {"items": ["i1"], "k": 0}], "instances[1].k"),
    ([{"items": ["i1"], "k": "3"}], "instances[0].k"),
    ([{"items": [["i1"]]}], "instances[0].items"),
])
def test_bad_instances_are_named(served, instances, message):
    with pytest.raises(PadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        served[1].predict(instances)


def test_follows_the_champion_and_refuses_a_broken_one(served, shop, tmp_path, caplog):
    store, predictor, old = served
    new = store.publish(shop["new_model"], shop["new_dataset"], shop["new_text"]).version
    predictor.refresh()
    assert predictor.loaded.version == new
    assert predictor.predict([{"items": ["i55"]}])[0]["unknown"] == []  # the new model knows the new items

    # a corrupt version (weights that do not match the manifest) is refused; `new` keeps answering
    store.rollback()
    (tmp_path / "store" / "versions" / old / "model" / "model.safetensors").write_bytes(b"garbage")
    with caplog.at_level(logging.ERROR, logger="pad.serve"):
        predictor.refresh()
    assert predictor.loaded.version == new and predictor.refused[0] == old
    assert f"champion {old} refused" in caplog.text and "does not match the manifest" in caplog.text
    assert predictor.predict([{"items": ["i1"]}])[0]["version"] == new
    caplog.clear()
    predictor.refresh()
    assert caplog.text == "", "a refused version is not retried until the pointer moves"
    with pytest.raises(PadError, match="does not match the manifest"):
        Predictor(store.uri).load()


def test_an_incompatible_version_is_refused(served, shop, tmp_path):
    """Files that match their manifest but do not belong together: the item list is shorter than the model's."""
    store, predictor, old = served
    id_only = store.publish(shop["new_id_model"], shop["new_dataset"]).version  # no text table to catch it first
    rewrite_items(tmp_path / "store" / "versions" / id_only, lambda items: items.iloc[:-1])
    fresh = Predictor(store.uri)
    with pytest.raises(PadError, match="ranks 60 items but its item list holds 59"):
        fresh.load()
    assert fresh.loaded is None
    predictor.refresh()
    assert predictor.loaded.version == old and predictor.refused[0] == id_only


def test_serve_without_the_extra_says_how_to_install_it(tmp_path, capsys):
    try:
        import kserve  # noqa: F401
    except ImportError:
        from pad.cli import main

        assert main(["serve", "--store", str(tmp_path)]) == 2
        assert "pad serve needs the [serve] extra" in capsys.readouterr().err
    else:
        pytest.skip("kserve is installed here")


def test_concurrent_requests_are_scored_together_as_each_alone(served, monkeypatch):
    """One scoring call for requests that wait together; each gets what it gets alone, its own k included."""
    _, predictor, _ = served
    requests = [[{"items": h, "k": k}] for h, k in zip(HISTORIES * 3, [1, 5, 10, 3, 20] * 3)]
    requests.append([{"items": ["i1"], "k": 2}, {"items": ["i3", "i4"], "k": 4}])  # two histories in one request
    alone = [predictor.predict(r) for r in requests]
    calls = []
    score = predictor.score
    monkeypatch.setattr(predictor, "score", lambda h, k: calls.append(len(h)) or score(h, k))

    async def together(batcher):
        return await asyncio.gather(*(batcher.predict(r) for r in requests))

    answers = asyncio.run(together(Batcher(predictor, window=0.0, max_batch=256)))
    assert calls == [17]  # all were waiting when the first batch formed
    for mine, reference in zip(answers, alone):
        assert [a["items"] for a in mine] == [a["items"] for a in reference]
        assert np.allclose([s for a in mine for s in a["scores"]], [s for a in reference for s in a["scores"]],
                           atol=1e-5)
        assert [a["fallback"] for a in mine] == [a["fallback"] for a in reference]
    assert [len(a[0]["items"]) for a in answers[:5]] == [1, 5, 10, 3, 20]

    calls.clear()
    answers = asyncio.run(together(Batcher(predictor, window=0.0, max_batch=4)))
    # in arrival order; the two-history request does not fit beside the last three and starts the next batch
    assert calls == [4, 4, 4, 3, 2] and [len(a) for a in answers] == [1] * 15 + [2]


def test_the_window_waits_for_later_requests_and_a_bad_request_fails_alone(served, monkeypatch):
    _, predictor, _ = served
    calls = []
    score = predictor.score
    monkeypatch.setattr(predictor, "score", lambda h, k: calls.append(len(h)) or score(h, k))

    async def staggered(window):
        batcher = Batcher(predictor, window=window, max_batch=256)

        async def later(n, body):
            await asyncio.sleep(0.02 * n)
            return await batcher.predict(body)

        return await asyncio.gather(*(later(n, [{"items": ["i1"]}]) for n in range(3)),
                                    later(1, [{"items": ["i1"], "k": 0}]), return_exceptions=True)

    *good, bad = asyncio.run(staggered(0.5))
    assert calls == [3] and all(a[0]["items"] for a in good)
    assert isinstance(bad, PadError) and "instances[0].k" in str(bad)
    calls.clear()
    asyncio.run(staggered(0.0))
    assert calls == [1, 1, 1]
    with pytest.raises(PadError, match="max_batch 0"):
        Batcher(predictor, window=0.0, max_batch=0)
