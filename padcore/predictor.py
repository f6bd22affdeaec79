"""The serving logic behind `pad serve`: the store's champion answers top-K for item-id histories.

It holds one loaded version at a time and swaps in a new one only once it has
loaded whole: a champion that is corrupt or incompatible is refused with the
reason, and the version already loaded keeps answering. A history with no item
the model knows is answered with the most popular items of its training data,
flagged `"fallback": "popular"`. `Batcher` scores concurrent requests together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from padcore.batches import window
from padcore.errors import PadError
from padcore.recommend import Ranker, ranker_from_version
from padcore.store import Store

log = logging.getLogger("pad.serve")
DEFAULT_K = 10
MAX_K = 1000


@dataclass(frozen=True)
class Loaded:
    version: str
    ranker: Ranker


class Predictor:
    """The champion of `store`, reloaded when the pointer moves."""

    def __init__(self, store: str, device: str = "cpu"):
        self.store = Store(store)
        self.device = device
        self.loaded: Loaded | None = None
        self.refused: tuple[str, str] | None = None  # (version, why) of the last champion that failed to load
        self._lock = threading.Lock()

    def load(self) -> str:
        """Load the champion if it is not the one loaded; raise PadError (keeping the loaded one) if it cannot be."""
        with self._lock:
            version = self.store.champion()
            if version is None:
                raise PadError(f"{self.store.uri}: no champion to serve (pad publish --model M --to {self.store.uri})")
            if self.loaded and self.loaded.version == version:
                return version
            try:
                ranker = ranker_from_version(self.store.open(version), self.device)
            except PadError as exc:
                self.refused = (version, str(exc))
                raise PadError(f"champion {version} refused: {exc}") from exc
            self.loaded, self.refused = Loaded(version, ranker), None
            log.info("serving version %s (%d items)", version, len(ranker.keys) - 1)
            return version

    def refresh(self) -> None:
        """Follow the champion pointer; a version that fails to load is logged once and not retried until it moves."""
        try:
            version = self.store.champion()
            if version is None or (self.loaded and version == self.loaded.version):
                return
            if self.refused and self.refused[0] == version:
                return
            self.load()
        except PadError as exc:
            log.error("%s; still serving %s", exc, self.loaded.version if self.loaded else "nothing")

    def watch(self, every: float) -> threading.Event:
        """Refresh every `every` seconds in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self.refresh()

        threading.Thread(target=loop, name="pad-champion-watch", daemon=True).start()
        return stop

    def predict(self, instances: Any) -> list[dict]:
        """`[{"items": [ids, oldest first], "k": 10}, ...]` -> `[{"items", "scores", "unknown", "fallback",
        "version"}, ...]`."""
        return self.score(*parse(instances))

    def score(self, histories: list[list[str]], ks: list[int]) -> list[dict]:
        """The answers for checked histories (`parse`), all by one loaded version."""
        loaded = self.loaded
        if loaded is None:
            raise PadError("no model loaded")
        ranker = loaded.ranker
        idx = [ranker.to_idx(h) for h in histories]
        known = [i[i > 0] for i in idx]
        out: list[dict] = [{"items": [], "scores": [], "unknown": [str(x) for x, i in zip(h, ix) if i < 0],
                            "fallback": None, "version": loaded.version}
                           for h, ix in zip(histories, idx)]
        rows = [r for r, k in enumerate(known) if len(k)]
        if rows:
            lengths = np.array([len(known[r]) for r in rows])
            flat = np.concatenate([known[r] for r in rows]).astype(np.int32)
            ends = np.cumsum(lengths)
            starts = ends - lengths
            inputs = torch.from_numpy(window(flat, starts, ends, min(ranker.max_len, int(lengths.max()))))
            history = torch.from_numpy(window(flat, starts, ends, int(lengths.max())))
            items, scores = ranker.top_k(inputs, history, max(ks[r] for r in rows))
            for j, r in enumerate(rows):
                real = items[j, : ks[r]] > 0
                out[r]["items"] = ranker.keys[items[j, : ks[r]][real]].astype(str).tolist()
                out[r]["scores"] = [float(s) for s in scores[j, : ks[r]][real]]
        if ranker.freq is not None:
            for r in set(range(len(out))) - set(rows):
                items, counts = ranker.popular(ks[r])
                out[r].update(items=ranker.keys[items].astype(str).tolist(), scores=[float(c) for c in counts],
                              fallback="popular")
        return out


class Batcher:
    """Concurrent requests to a `Predictor`, scored together: one scoring call per batch, off the event loop.

    A batch starts with the oldest waiting request, takes every request already waiting, then waits up to
    `window` seconds for more, until it holds `max_batch` histories (a larger request is a batch of its own).
    Each request is checked on its own first, so a malformed one fails alone. While a batch is scored, new
    requests queue for the next one: under load, batches grow by themselves.
    """

    def __init__(self, predictor: Predictor, window: float, max_batch: int):
        if window < 0 or max_batch < 1:
            raise PadError(f"batching: window {window} s must be 0 or more and max_batch {max_batch} 1 or more")
        self.predictor, self.window, self.max_batch = predictor, window, max_batch
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._held: tuple | None = None  # a request that did not fit the last batch: the next one's first
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pad-score")

    async def predict(self, instances: Any) -> list[dict]:
        """As `Predictor.predict`, scored with the requests that arrive with it."""
        histories, ks = parse(instances)
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        answer = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((histories, ks, answer))
        return await answer

    async def _next(self) -> list[tuple]:
        loop = asyncio.get_running_loop()
        batch = [self._held or await self._queue.get()]
        self._held = None
        size, deadline = len(batch[0][0]), loop.time() + self.window
        while size < self.max_batch:
            try:
                request = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if size + len(request[0]) > self.max_batch:
                self._held = request
                break
            batch.append(request)
            size += len(request[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next()
            histories = [h for b in batch for h in b[0]]
            ks = [k for b in batch for k in b[1]]
            try:
                answers = await loop.run_in_executor(self._pool, self.predictor.score, histories, ks)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            start = 0
            for h, _, answer in batch:
                if not answer.done():  # its client may have gone
                    answer.set_result(answers[start : start + len(h)])
                start += len(h)


def parse(instances: Any) -> tuple[list[list[str]], list[int]]:
    """Check the V1 instances; an error names the instance and the field."""
    if not isinstance(instances, list) or not instances:
        raise PadError('"instances": expected a non-empty list of {"items": [...], "k": 10}')
    histories, ks = [], []
    for n, inst in enumerate(instances):
        if not isinstance(inst, dict) or not isinstance(inst.get("items"), list):
            raise PadError(f'instances[{n}]: expected an object with "items": a list of item ids')
        k = inst.get("k", DEFAULT_K)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise PadError(f'instances[{n}].k: expected an integer from 1 to {MAX_K}, got {k!r}')
        if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in inst["items"]):
            raise PadError(f'instances[{n}].items: expected item ids (strings)')
        histories.append([str(x) for x in inst["items"]])
        ks.append(k)
    return histories, ks
