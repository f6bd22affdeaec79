"""`pad serve` for real: a KServe model server on 127.0.0.1, queried over HTTP with KServe's V1 protocol.

Needs the `[serve]` extra (kserve 0.21, pandas < 3), so it runs in its own
environment: `bash tests/serve/run.sh`. Elsewhere the whole module is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

try:
    import kserve  # noqa: F401
except ImportError:
    pytest.skip("needs the [serve] extra: run `bash tests/serve/run.sh`", allow_module_level=True)

from conftest import free_port
from padcore.steps import recommend
from padcore.store import Store

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = [["i1", "i5", "i2"], ["i3", "i4"], ["i7", "no-such-item", "i9"]]


class Server:
    """`pad serve` in a subprocess; its log goes to a file the tests read."""

    def __init__(self, store: str, log: Path, poll: float = 0.3, extra: tuple | list = ()):
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pad", "serve", "--store", store, "--host", "127.0.0.1", "--port", str(self.port),
             "--poll", str(poll), *extra],
            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"pad serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models/pad", timeout=2) as resp:
                    if json.loads(resp.read()).get("ready"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"pad serve not ready after {timeout} s:\n{self.log.read_text()}")

    def predict(self, body) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}/v1/models/pad:predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def store(tmp_path, shop) -> Store:
    store = Store(tmp_path / "store")
    store.publish(shop["old_model"], shop["old_dataset"], shop["old_text"])
    return store


@pytest.fixture
def server(store, tmp_path):
    srv = Server(store.uri, tmp_path / "serve.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def wait_for(check, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_answers_what_pad_recommend_answers(server, store, tmp_path):
    status, body = server.predict({"instances": [{"items": h, "k": 10} for h in HISTORIES]})
    assert status == 200
    rows = [(f"u{n}", item, t) for n, h in enumerate(HISTORIES) for t, item in enumerate(h)]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(tmp_path / "h.csv", index=False)
    recommend(store.open(), tmp_path / "r.parquet", sequences=str(tmp_path / "h.csv"), k=10)
    rec = pq.read_table(tmp_path / "r.parquet").to_pandas()
    for n, answer in enumerate(body["predictions"]):
        mine = rec[rec["user"] == f"u{n}"]
        assert answer["items"] == mine["item"].tolist()
        assert np.allclose(answer["scores"], mine["score"], atol=1e-5)
        assert answer["version"] == store.champion()
    assert body["predictions"][2]["unknown"] == ["no-such-item"]


def test_a_bad_request_is_a_400_naming_the_field(server):
    status, body = server.predict({"instances": [{"items": ["i1"], "k": 0}]})
    assert status == 400 and "instances[0].k" in body["error"]
    status, body = server.predict({"rows": []})
    assert status == 400 and "instances" in body["error"]


def test_follows_the_champion_and_keeps_serving_when_the_new_one_is_corrupt(server, store, shop, tmp_path):
    old = store.champion()
    bad = store.publish(shop["new_model"], shop["new_dataset"], shop["new_text"], promote=False).version
    (Path(store.uri) / "versions" / bad / "model" / "model.safetensors").write_bytes(b"garbage")
    store.promote(bad)
    wait_for(lambda: f"champion {bad} refused" in server.log.read_text())
    assert "does not match the manifest" in server.log.read_text()
    status, body = server.predict({"instances": [{"items": ["i1"], "k": 3}]})
    assert status == 200 and body["predictions"][0]["version"] == old  # the old model keeps answering

    good = store.publish(shop["new_id_model"], shop["new_dataset"]).version
    wait_for(lambda: server.predict({"instances": [{"items": ["i1"]}]})[1]["predictions"][0]["version"] == good)
    status, body = server.predict({"instances": [{"items": ["i55", "i1"], "k": 3}]})
    assert body["predictions"][0]["unknown"] == []  # the new model knows the new items


def test_a_corrupt_champion_is_refused_at_start(store, tmp_path):
    version = store.champion()
    (Path(store.uri) / "versions" / version / "items.parquet").write_bytes(b"garbage")
    srv = Server(store.uri, tmp_path / "serve.log")
    try:
        assert srv.proc.wait(120) == 2
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert f"pad serve: error: champion {version} refused" in log and "does not match the manifest" in log


def test_concurrent_requests_get_what_each_gets_alone(server):
    """Requests arriving together are scored in one batch (padcore.predictor.Batcher), each answered as alone."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = [{"instances": [{"items": h, "k": k}]} for h in HISTORIES for k in (1, 4, 10)]
    alone = [server.predict(b) for b in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(server.predict, bodies * 4))
    for (status, body), (_, reference) in zip(together, alone * 4):
        assert status == 200
        assert body["predictions"][0]["items"] == reference["predictions"][0]["items"]
        assert np.allclose(body["predictions"][0]["scores"], reference["predictions"][0]["scores"], atol=1e-5)


def test_requests_are_not_logged_unless_asked(server, store, tmp_path):
    """kserve's timing middleware and latency line and uvicorn's access log: off by default, on with --log-requests."""
    for _ in range(3):
        assert server.predict({"instances": [{"items": ["i1"]}]})[0] == 200
    assert "POST /v1/models/pad:predict" not in server.log.read_text() and "kserve.trace" not in server.log.read_text()
    loud = Server(store.uri, tmp_path / "loud.log", extra=["--log-requests"])
    try:
        loud.wait_ready()
        assert loud.predict({"instances": [{"items": ["i1"]}]})[0] == 200
        wait_for(lambda: "POST /v1/models/pad:predict" in loud.log.read_text())
        assert "kserve.trace" in loud.log.read_text()
    finally:
        loud.stop()


def test_a_history_of_unknown_items_gets_the_popular_items_flagged(server):
    status, body = server.predict({"instances": [{"items": ["nobody-knows-me"], "k": 3}, {"items": ["i1"], "k": 3}]})
    fallback, ranked = body["predictions"]
    assert status == 200 and fallback["fallback"] == "popular" and len(fallback["items"]) == 3
    assert fallback["unknown"] == ["nobody-knows-me"] and ranked["fallback"] is None


def test_the_load_test_runs_and_swaps_the_champion_without_a_failed_request(store, shop, tmp_path):
    """bench/serve.py end to end, small: every phase answered, malformed requests 400, both versions seen."""
    other = store.publish(shop["old_id_model"], shop["old_dataset"], promote=False).version
    out = tmp_path / "serve.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "serve.py"), "--store", store.uri, "--dataset",
                    str(shop["old_dataset"]), "--requests", "20", "--rates", "50", "--seconds", "1",
                    "--mixed-rate", "100", "--mixed-seconds", "4", "--no-recommend", "--json", str(out)],
                   check=True, timeout=300)
    results = json.loads(out.read_text())
    assert results["swap_to"] == other and Store(store.uri).champion() != other  # the bench swapped a copy
    (rate,) = results["rates"]
    assert rate["errors"] == {} and rate["valid_answered"] == 50 and rate["p99_ms"] > 0
    mixed = results["mixed"]
    assert mixed["errors"] == {} and set(mixed["bad"]) == {"400"} and sum(mixed["bad"].values()) > 10
    assert set(mixed["versions"]) == {store.champion(), other}
