"""The serving logic behind `pad serve`: the store's champion answers top-K for item-id histories.

It holds one loaded version at a time and swaps in a new one only once it has
loaded whole: a champion that is corrupt or incompatible is refused with the
reason, and the version already loaded keeps answering.
"""

from __future__ import annotations

import logging
import threading
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
        """`[{"items": [ids, oldest first], "k": 10}, ...]` -> `[{"items", "scores", "unknown", "version"}, ...]`."""
        loaded = self.loaded
        if loaded is None:
            raise PadError("no model loaded")
        ranker = loaded.ranker
        histories, ks = _parse(instances)
        idx = [ranker.to_idx(h) for h in histories]
        known = [i[i > 0] for i in idx]
        out: list[dict] = [{"items": [], "scores": [], "version": loaded.version,
                            "unknown": [str(x) for x, i in zip(h, ix) if i < 0]}
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
        return out


def _parse(instances: Any) -> tuple[list[list[str]], list[int]]:
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
