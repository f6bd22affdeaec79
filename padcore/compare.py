"""Champion vs challenger: both ranked on the new dataset's test split by evaluation's own code.

The champion was trained on an older item set. It sees the new histories through
its own items (matched by the source's id, never by item_idx; items it does not
know are left out of its inputs, and its input is the latest `max_len` items it
knows) and scores only the items it knows: an item new since its training
scores -inf and can never be its hit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from padcore.artifacts import atomic_dir, write_json
from padcore.batches import EvalSplit, split_tensors, window
from padcore.config import TrainConfig
from padcore.dataset import Dataset, load_dataset
from padcore.errors import PadError
from padcore.metrics import UNREACHABLE, full_ranking_metrics
from padcore.recommend import Ranker
from padcore.trainer import pick_device, rank_split


class InItemSpace:
    """A ranker's model with its scores put in a dataset's columns, matched by item id; unknown items score -inf.

    Its inputs are already in the model's own item_idx (see `champion_inputs`).
    """

    def __init__(self, ranker: Ranker, ds: Dataset):
        self.model = ranker.model
        own = ranker.to_idx(ds.items["item"].to_numpy())
        self.columns = torch.from_numpy(np.concatenate([[-1], own])).long()  # dataset idx -> model idx (-1 unknown)

    def eval(self) -> "InItemSpace":
        self.model.eval()
        return self

    def item_side(self):
        return self.model.item_side()

    def scores(self, seq: torch.Tensor, side) -> torch.Tensor:
        scores = self.model.scores(seq, side).float()
        columns = self.columns.to(scores.device)
        out = scores[:, columns.clamp(min=0)]
        out[:, columns < 0] = float("-inf")
        return out


def champion_inputs(ranker: Ranker, ds: Dataset) -> tuple[torch.Tensor, np.ndarray]:
    """Each user's test input for the ranker: the latest `max_len` items before the target that it knows, in its
    own item_idx; and which users have none."""
    mapping = np.concatenate([[-1], ranker.to_idx(ds.items["item"].to_numpy())])
    own = mapping[ds.flat]
    keep = own > 0
    keep[ds.offsets[1:] - 1] = False  # the test target is no input
    owner = np.repeat(np.arange(ds.n_users), ds.lengths)
    counts = np.bincount(owner[keep], minlength=ds.n_users)
    ends = np.cumsum(counts)
    return torch.from_numpy(window(own[keep], ends - counts, ends, ranker.max_len)), counts == 0


def decide(champion: dict | None, challenger: dict, min_gain: float, force: bool) -> tuple[bool, float | None, str]:
    """(publish?, relative nDCG@10 gain, reason). Publishing needs gain > min_gain, unless forced or no champion."""
    if champion is None:
        return True, None, "no champion yet"
    c, n = champion["ndcg@10"], challenger["ndcg@10"]
    gain = (n - c) / c if c > 0 else (math.inf if n > 0 else 0.0)
    if force:
        return True, gain, "forced"
    if gain > min_gain:
        return True, gain, f"nDCG@10 {n:.4f} vs {c:.4f}: gain {gain:+.2%} > min_gain {min_gain:.2%}"
    return False, gain, f"nDCG@10 {n:.4f} vs {c:.4f}: gain {gain:+.2%} does not exceed min_gain {min_gain:.2%}"


def compare(dataset: str | Path, model: str | Path, out: str | Path, *, text: str | Path | None = None,
            store: str = "", min_gain: float = 0.0, force: bool = False, device: str = "cpu") -> dict:
    """Rank the test split with the challenger `model` and the store's champion; write `decision.json` to `out`."""
    from padcore.recommend import ranker_from_artifacts
    from padcore.recommend import ranker_from_version
    from padcore.store import Store

    ds = load_dataset(dataset)
    dev = pick_device(device)
    challenger = ranker_from_artifacts(model, ds, text, device)
    test = split_tensors(ds, challenger.max_len).test
    cfg = TrainConfig()
    targets = test.targets.numpy()
    result = {"challenger": _metrics(rank_split(challenger.model, test, cfg, dev), targets, ds), "champion": None,
              "champion_version": None}
    if store:
        st = Store(store)
        version = st.champion()
        if version is not None:
            champ = ranker_from_version(st.open(version), device)
            view = InItemSpace(champ, ds)
            inputs, no_input = champion_inputs(champ, ds)
            ranks = rank_split(view, EvalSplit(inputs, test.targets, test.history), cfg, dev)
            unknown = (view.columns[test.targets] < 0).numpy()
            ranks[unknown | no_input] = UNREACHABLE  # a new item is never its hit; nothing known, nothing ranked
            result["champion"] = _metrics(ranks, targets, ds)
            result["champion_version"] = version
            result["champion_items_known"] = int((view.columns[1:] > 0).sum())
            result["test_targets_new_to_champion"] = int(unknown.sum())
    publish, gain, reason = decide(result["champion"], result["challenger"], min_gain, force)
    result.update(publish=publish, gain=gain if gain is None or math.isfinite(gain) else None, reason=reason,
                  min_gain=min_gain, force=force, store=store, dataset_id=ds.dataset_id, model=str(model))
    with atomic_dir(out) as tmp:
        write_json(tmp / "decision.json", {"kind": "decision", **result})
        write_json(tmp / "meta.json", {"kind": "decision", "dataset_id": ds.dataset_id, "publish": publish})
    print(f"[compare] {'publish' if publish else 'keep the champion'}: {reason}", flush=True)
    return result


def _metrics(ranks: np.ndarray, targets: np.ndarray, ds: Dataset) -> dict:
    m = full_ranking_metrics(ranks, targets, ds)
    return {k: v for k, v in m.items() if k != "buckets"}


def read_decision(folder: str | Path) -> dict:
    path = Path(folder) / "decision.json"
    if not path.is_file():
        raise PadError(f"{path}: missing; is {folder} the output of pad compare?")
    return json.loads(path.read_text())
