"""The serving logic: answers as `pad recommend` gives them, unknown ids reported, champion changes followed,
and a broken champion refused while the loaded one keeps answering."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from padcore.errors import PadError
from padcore.predictor import Predictor
from padcore.steps import recommend
from padcore.store import Store

HISTORIES = [["i1", "i5", "i2"], ["i3"], ["i7", "no-such-item", "i9", "i4", "i11", "i0"], ["unknown-1"], []]


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
    for n, answer in enumerate(answers):
        mine = rec[rec["user"] == f"u{n}"]
        assert answer["items"] == mine["item"].tolist()
        assert np.allclose(answer["scores"], mine["score"], atol=1e-5)
        assert answer["version"] == old
    assert answers[2]["unknown"] == ["no-such-item"] and len(answers[2]["items"]) == 5
    assert not set(answers[0]["items"]) & set(HISTORIES[0])
    assert answers[3] == {"items": [], "scores": [], "unknown": ["unknown-1"], "version": old}
    assert answers[4]["items"] == [] and answers[4]["unknown"] == []


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
    folder = tmp_path / "store" / "versions" / id_only
    items = pq.read_table(folder / "items.parquet").to_pandas()
    items.iloc[:-1].to_parquet(folder / "items.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    from padcore.artifacts import sha256_file

    manifest["files"]["items.parquet"]["sha256"] = sha256_file(folder / "items.parquet")
    (folder / "manifest.json").write_text(json.dumps(manifest))
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
