"""Equal-weight ensembles of trained models, and the evaluation of any model artifact or ensemble.

An ensemble scores an item by the mean of its members' scores — exactly how PAD's
experts are fused before phase 3 learns anything (`fusion: equal`) — so "three
SASRecs" or "two SASRecs and the alignment expert" are the controls a gain from
fusing PAD's experts is measured against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from padcore.batches import split_tensors
from padcore.checkpoint import load_model, read_model_meta
from padcore.config import TrainConfig
from padcore.dataset import Dataset
from padcore.experts import PadModel
from padcore.metrics import full_ranking_metrics
from padcore.trainer import pick_device, rank_split


class Ensemble(nn.Module):
    """The mean of several models' scores; it ranks exactly as a `PadModel` does."""

    def __init__(self, members: list[PadModel]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def item_side(self) -> list:
        return [m.item_side() for m in self.members]

    def scores(self, seq: torch.Tensor, side: list | None = None) -> torch.Tensor:
        side = side if side is not None else self.item_side()
        return sum(m.scores(seq, s).float() for m, s in zip(self.members, side)) / len(self.members)


def load_members(folders: list[str | Path], ds: Dataset, text: np.ndarray | None) -> Ensemble:
    """An ensemble of model artifacts, each checked against the dataset."""
    members = []
    for folder in folders:
        meta, _ = read_model_meta(folder, ds)
        members.append(load_model(folder, text if meta.get("text_hash") else None))
    return Ensemble(members).eval()


def evaluate(model: PadModel | Ensemble, ds: Dataset, split: str = "test", device: str = "cpu",
             max_len: int | None = None) -> dict:
    """Full-ranking metrics (HR@10, nDCG@10, groups, buckets) of a model or ensemble on a split of `ds`."""
    cfg = TrainConfig(device=device)
    data = split_tensors(ds, max_len or ds.meta["protocol"]["max_len"])
    part = getattr(data, split)
    return full_ranking_metrics(rank_split(model, part, cfg, pick_device(device)), part.targets.numpy(), ds)
