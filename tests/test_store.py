"""The model store, in a folder and on gs:// (the GCS emulator): versions, the champion, races and crashes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pad.cli import main
from padcore.errors import PadError
from padcore.recommend import ranker_from_version
from padcore.store import Conflict, Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["folder", "gcs"])
def store_uri(request, tmp_path):
    """A fresh store: a local folder, or a prefix of a bucket on the GCS emulator."""
    if request.param == "folder":
        return str(tmp_path / "store")
    client = request.getfixturevalue("gcs")
    client.create_bucket("models")
    return "gs://models/pad/prod"


def publish_old(store_uri: str, shop) -> str:
    return Store(store_uri).publish(shop["old_model"], shop["old_dataset"], shop["old_text"]).version


def test_publish_list_promote_rollback(store_uri, shop, capsys):
    store = Store(store_uri)
    assert store.versions() == [] and store.champion() is None
    first = publish_old(store_uri, shop)
    assert store.champion() == first
    second = store.publish(shop["new_model"], shop["new_dataset"], shop["new_text"], promote=False).version
    assert store.champion() == first and [m["version"] for m in store.versions()] == sorted([first, second])
    manifest = store.manifest(second)
    assert manifest["dataset"]["source"] == "synthetic:new" and manifest["items"]["count"] == 60
    assert manifest["model"]["phase"] == "finetune" and manifest["model"]["config"]["config"]["dim"] == 16
    assert manifest["text"]["text_hash"] == "synthetic-new" and manifest["code"]["pad"]
    assert manifest["parents"]["model"] == str(shop["new_model"]) and manifest["parents"]["align"].endswith("m2")
    assert set(manifest["files"]) >= {"model/model.safetensors", "model/config.json", "items.parquet",
                                      "text/embeddings.npy"}
    assert manifest["model"]["test"]["ndcg@10"] == json.loads((shop["new_model"] / "metrics.json").read_text())["test"]["ndcg@10"]

    assert main(["models", "promote", second, "--store", store_uri]) == 0
    assert store.champion() == second
    assert main(["models", "list", "--store", store_uri]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^\*\s+{second}\s", listing, re.M) and re.search(rf"^\s+{first}\s", listing, re.M)
    assert "synthetic:old" in listing
    assert main(["models", "rollback", "--store", store_uri]) == 0
    assert store.champion() == first
    assert main(["models", "show", "--store", store_uri]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["version"] == first and shown["champion"] is True
    assert main(["models", "rollback", "--store", store_uri]) == 2
    assert "no earlier champion" in capsys.readouterr().err
    assert main(["models", "promote", "20990101T000000Z-00000000", "--store", store_uri]) == 2
    assert "no version" in capsys.readouterr().err


def test_a_version_opens_as_it_was_published(store_uri, shop):
    store = Store(store_uri)
    version = publish_old(store_uri, shop)
    folder = store.open()
    ranker = ranker_from_version(folder)
    assert ranker.label == version and len(ranker.keys) == 51 and ranker.keys[1] == "i0"
    assert (folder / "model" / "model.safetensors").read_bytes() == (shop["old_model"] / "model.safetensors").read_bytes()


def test_two_concurrent_publishes_make_exactly_one_champion(store_uri, shop):
    """Both read the same champion, both publish, both try to promote: one wins, both versions stay whole."""
    publish_old(store_uri, shop)
    store = Store(store_uri)
    before = store.champion()
    barrier = threading.Barrier(2)
    results = []

    def run(model):
        s = Store(store_uri)
        seen = s.champion()
        barrier.wait(timeout=60)  # neither publish goes on before both have read the champion
        results.append(s.publish(model, shop["new_dataset"], shop["new_text"], expected=seen))

    threads = [threading.Thread(target=run, args=(shop[m],)) for m in ("new_model", "new_id_model")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2
    assert sorted(r.promoted for r in results) == [False, True]
    winner = next(r.version for r in results if r.promoted)
    loser = next(r for r in results if not r.promoted)
    assert store.champion() == winner and f"changed from {before}" in loser.message
    assert json.loads(store.backend.get("champion.json")[0])["previous"] == [before]
    for r in results:  # both versions are whole (their files match their manifests)
        store.open(r.version)
    assert len(store.versions()) == 3


def test_promote_against_a_stale_champion_is_refused(store_uri, shop):
    store = Store(store_uri)
    old = publish_old(store_uri, shop)
    new = store.publish(shop["new_model"], shop["new_dataset"], shop["new_text"], promote=False).version
    with pytest.raises(Conflict):
        store.promote(new, expected=None)  # it was compared against "no champion", but there is one now
    assert store.champion() == old
    store.promote(new, expected=old)
    assert store.champion() == new


KILL_AFTER_FIRST_FILE = """
import os, signal, sys, shutil
import padcore.store as store

uploads = []
def upload_then_die(*args, **kwargs):
    uploads.append(args)
    if len(uploads) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: as if the node died
    return real(*args, **kwargs)

if sys.argv[1].startswith("gs://"):
    from google.cloud.storage import Blob
    real = Blob.upload_from_filename
    Blob.upload_from_filename = lambda self, *a, **k: upload_then_die(self, *a, **k)
else:
    real = shutil.copy2
    shutil.copy2 = upload_then_die
store.Store(sys.argv[1]).publish(sys.argv[2], sys.argv[3], sys.argv[4])
"""


def test_a_publish_killed_half_way_leaves_no_version(store_uri, shop, tmp_path):
    store = Store(store_uri)
    old = publish_old(store_uri, shop)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_FILE, store_uri, str(shop["new_model"]),
                           str(shop["new_dataset"]), str(shop["new_text"])], cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == -signal.SIGKILL
    assert store.champion() == old
    assert [m["version"] for m in store.versions()] == [old]
    if not store_uri.startswith("gs://"):  # the crash left its staging folder, hidden from every reader
        assert [p.name.startswith(".partial-") for p in (Path(store_uri) / "versions").iterdir()].count(True) == 1
    assert store.publish(shop["new_model"], shop["new_dataset"], shop["new_text"]).promoted  # the store still works


def test_a_corrupt_version_is_refused(store_uri, shop, tmp_path):
    store = Store(store_uri)
    version = publish_old(store_uri, shop)
    name = f"versions/{version}/model/model.safetensors"
    if store_uri.startswith("gs://"):
        store.backend.bucket.blob(store.backend.prefix + name).upload_from_string(b"not weights")
    else:
        (Path(store_uri) / name).write_bytes(b"not weights")
    with pytest.raises(PadError, match=f"does not match the manifest.*version {version} is corrupt"):
        store.open(version)
    assert main(["models", "promote", version, "--store", store_uri]) == 2


def test_publish_refuses_mismatched_inputs(tmp_path, shop):
    store = Store(tmp_path / "s")
    with pytest.raises(PadError, match="trained on dataset"):
        store.publish(shop["new_model"], shop["old_dataset"], shop["old_text"])
    with pytest.raises(PadError, match="publish it with its text artifact"):
        store.publish(shop["new_model"], shop["new_dataset"])
    with pytest.raises(PadError, match="not the text table"):
        store.publish(shop["new_model"], shop["new_dataset"], shop["old_text"])
    assert store.versions() == [] and not [p for p in (tmp_path / "s" / "versions").iterdir()]
    id_only = store.publish(shop["new_id_model"], shop["new_dataset"])  # no text experts: no text needed
    assert store.manifest(id_only.version)["text"] is None


def test_publish_verb(tmp_path, shop, capsys, monkeypatch):
    import datetime as dt

    import padcore.store

    class Frozen(dt.datetime):  # one second for all three publishes: the assertions below must not race the clock
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 12, 8, 4, 56, 11, tzinfo=tz)

    monkeypatch.setattr(padcore.store, "datetime", Frozen)
    to = str(tmp_path / "s")
    args = ["publish", "--model", str(shop["old_model"]), "--dataset", str(shop["old_dataset"]),
            "--text", str(shop["old_text"]), "--to", to]
    assert main(args) == 0
    assert "it is the champion" in capsys.readouterr().out
    assert main(args) == 0, "the same files in the same second are the same version"
    assert main(["publish", "--model", str(shop["new_model"]), "--dataset", str(shop["new_dataset"]),
                 "--text", str(shop["new_text"]), "--to", to, "--no-promote"]) == 0
    assert "(not promoted)" in capsys.readouterr().out and len(Store(to).versions()) == 2
