"""Champion vs challenger: both ranked on the new dataset's test split by evaluation's own code.

The champion was trained on an older item set. It sees the new histories through
its own items (matched by the source's id, never by item_idx; items it does not
know are left out of its inputs) and scores only the items it knows: an item new
since its training scores -inf and can never be its hit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from padcore.artifacts import atomic_dir, write_json
from padcore.batches import split_tensors
from padcore.checkpoint import load_model
from padcore.config import TrainConfig
from padcore.dataset import Dataset, load_dataset
from padcore.errors import PadError
from padcore.metrics import UNREACHABLE, full_ranking_metrics
from padcore.recommend import Ranker
from padcore.trainer import pick_device, rank_split


class InItemSpace:
    """A ranker's model seen through a dataset's item space: the model's scores put in the dataset's columns by id.

    Inputs arrive as the dataset's item_idx; they are mapped to the model's own, items it
    does not know dropped and the rest kept left-aligned in order.
    """

    def __init__(self, ranker: Ranker, ds: Dataset):
        self.model, self.max_len = ranker.model, ranker.max_len
        own = ranker.to_idx(ds.items["item"].to_numpy())
        self.columns = torch.from_numpy(np.concatenate([[0], own])).long()  # dataset idx -> model idx (-1 unknown)
        self.inputs = self.columns.clamp(min=0)

    def eval(self) -> "InItemSpace":
        self.model.eval()
        return self

    def item_side(self):
        return self.model.item_side()

    def scores(self, seq: torch.Tensor, side) -> torch.Tensor:
        own = self.inputs.to(seq.device)[seq]
        # unknown items became padding: move the padding to the left, keeping the known items' order
        own = own.gather(1, torch.argsort((own > 0).int(), dim=1, stable=True))[:, -self.max_len :]
        scores = self.model.scores(own, side).float()
        columns = self.columns.to(scores.device)
        out = scores[:, columns.clamp(min=0)]
        out[:, columns < 0] = float("-inf")
        return out


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
    from padcore.store import Store, ranker_from_version

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
            ranks = rank_split(view, split_tensors(ds, champ.max_len).test, cfg, dev)
            unknown = (view.columns[test.targets] < 0).numpy()
            ranks[unknown] = UNREACHABLE
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
