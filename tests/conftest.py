"""Shared fixtures: a local GCS emulator, a local file server, synthetic datasets."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from padcore.dataset import Dataset, Protocol, RawData, build_dataset, write_dataset

# The fuzz tests (tests/test_fuzz.py): CI runs a fixed seed and a bounded number of examples;
# `pytest tests/test_fuzz.py --hypothesis-profile fuzz-long` runs many more, from a fresh seed each time.
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("fuzz-long", max_examples=3000, deadline=None, print_blob=True)
settings.load_profile("ci")


def pytest_addoption(parser):
    group = parser.getgroup("pad", "pad's fault and fuzz tests")
    group.addoption("--crash-kills", type=int, default=20, help="tests/test_faults.py: kills per command (default 20)")
    group.addoption("--crash-exec", action="store_true",
                    help="tests/test_faults.py: start every run as a fresh python instead of a fork (slower)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A `gcp-storage-emulator` server on 127.0.0.1 (in memory) for the whole session.

    The emulator ignores upload preconditions; `_enforce_generation_match` adds GCS's
    rule for `ifGenerationMatch`, so compare-and-swap is tested through the real client.
    """
    from gcp_storage_emulator.server import create_server

    _enforce_generation_match()
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


def _enforce_generation_match() -> None:
    """Make the emulator's uploads answer 412 when `ifGenerationMatch` is not the object's generation (0 = absent).

    Its server handles one request at a time, so the check and the write cannot interleave.
    """
    from http import HTTPStatus

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    insert = getattr(objects.insert, "unchecked", objects.insert)

    def checked(request, response, storage, *args, **kwargs):
        want = request.query.get("ifGenerationMatch")
        if want:
            name = request.query["name"][0] if "name" in request.query else request.data["meta"]["name"]
            try:
                have = storage.get_file_obj(request.params["bucket_name"], name)["generation"]
            except NotFound:
                have = "0"
            if str(have) != want[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
        return insert(request, response, storage, *args, **kwargs)

    checked.unchecked = insert
    objects.insert = checked
    for _, handlers in server.HANDLERS:
        for method, handler in handlers.items():
            if handler is insert:
                handlers[method] = checked


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """A google-cloud-storage client talking to the emulator, which starts empty.

    `STORAGE_EMULATOR_HOST` is set for the test, so code under test that makes
    its own `storage.Client()` reaches the emulator too.
    """
    from google.cloud import storage

    server, url = gcs_emulator
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    yield storage.Client(project="test")
    server.wipe()


@dataclass
class FileServer:
    """A folder served over HTTP on 127.0.0.1; `requests` records the paths asked for."""

    root: Path
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def file_server(tmp_path):
    """Serve `tmp_path / "served"` over HTTP from a thread for the test."""
    root = tmp_path / "served"
    root.mkdir()
    port = free_port()
    fs = FileServer(root, f"http://127.0.0.1:{port}")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            fs.requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield fs
    httpd.shutdown()
    httpd.server_close()


def artifact(cls, folder: Path, name: str):
    """A KFP artifact of type `cls` at `folder/name`, for calling a component's `.python_func`."""
    a = cls(name=name)
    a.path = str(folder / name)
    return a


@contextmanager
def bench_module(name: str) -> Iterator[object]:
    """bench/<name>.py imported as a module (it imports its neighbour `common`, so bench/ is on the path meanwhile)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(bench))


@contextmanager
def private_data_home(folder: Path) -> Iterator[Path]:
    """PAD_DATA_HOME = `folder` while a module fixture embeds, so the text cache never lands in the user's data home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAD_DATA_HOME", str(folder))
        yield folder


def save_tiny_bert(folder: Path, texts: list[str]):
    """A randomly initialised 2-layer BERT (seed 0) and a word-level tokenizer over `texts`, saved into `folder`.

    Returns (model, tokenizer).
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.lower().replace(",", " ").split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", model_max_length=64
    )
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return model, fast


def _synthetic_raw(n_users: int = 300, n_items: int = 60, seed: int = 0, lengths: tuple[int, int] = (3, 30)) -> RawData:
    rng = np.random.default_rng(seed)
    length = rng.integers(lengths[0], lengths[1] + 1, size=n_users)
    user = np.repeat(np.arange(n_users), length)
    pop = 1.0 / np.arange(1, n_items + 1)
    item = rng.choice(n_items, size=len(user), p=pop / pop.sum())
    stamp = rng.permutation(len(user)) * 7 + 1_600_000_000
    shuffle = rng.permutation(len(user))
    inter = pd.DataFrame(
        {
            "user": np.char.add("u", user[shuffle].astype(str)),
            "item": np.char.add("i", item[shuffle].astype(str)),
            "timestamp": stamp[shuffle],
        }
    )
    items = pd.DataFrame({"item": [f"i{k}" for k in range(n_items)], "text": [f"item {k}" for k in range(n_items)]})
    return RawData(inter, items, "interactions.csv", "items.csv", "synthetic")


@pytest.fixture
def synthetic_raw() -> Callable[..., RawData]:
    """Factory: `synthetic_raw(n_users=300, n_items=60, seed=0, lengths=(3, 30))` -> RawData.

    A random log with Zipf-like item popularity, rows in shuffled order; users
    `u<k>`, items `i<k>` with text `item <k>`, timestamps distinct within a user.
    """
    return _synthetic_raw


@pytest.fixture
def make_dataset(tmp_path) -> Callable[..., Dataset]:
    """Factory: `make_dataset(n_users=300, n_items=60, seed=0, max_len=20, min_len=5, buckets=10)`.

    Returns a Dataset built by the real protocol from a `synthetic_raw` log and written
    to a fresh folder under tmp_path (its `.path`).
    """
    counter = iter(range(1_000_000))

    def make(n_users=300, n_items=60, seed=0, max_len=20, min_len=5, buckets=10) -> Dataset:
        raw = _synthetic_raw(n_users, n_items, seed)
        ds = build_dataset(raw, Protocol(max_len=max_len, min_len=min_len, buckets=buckets))
        write_dataset(ds, tmp_path / f"dataset-{next(counter)}")
        return ds

    return make


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> dict[str, Path]:
    """Last month's and this month's tiny PAD models of one synthetic shop (see tests/shop.py)."""
    from shop import train_shop

    return train_shop(tmp_path_factory.mktemp("shop"), _synthetic_raw(n_users=300, n_items=60, seed=3))


def id_model(cfg, n_items: int, max_len: int):
    """A fresh ID-only model (PAD's phase 1) for unit tests."""
    from padcore.experts import PadModel, build_expert

    return PadModel({"id": build_expert("id", cfg, n_items, max_len, None)})
