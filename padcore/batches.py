"""Dataset -> padded tensors for training and evaluation (the protocol's splits).

Per user with chronological items s (length l): training targets are every next
item of s[:-2]; the validation target is s[-2] and the test target s[-1], each
with the latest `max_len` items before it as input. Sequences are left-padded
with 0 so the latest item is always in the last column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from padcore.dataset import Dataset


def window(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Left-padded [U, length] matrix of flat[start:end][-length:] per row (0 = padding)."""
    idx = ends[:, None] - length + np.arange(length)[None, :]
    ok = idx >= starts[:, None]
    return np.where(ok, flat[np.clip(idx, 0, max(len(flat) - 1, 0))], 0).astype(np.int64)


@dataclass
class EvalSplit:
    """Inputs [U, L], targets [U], history [U, S] (every item before the target, excluded from ranking)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    history: torch.Tensor

    def subset(self, rows: torch.Tensor) -> EvalSplit:
        """The users `rows` of this split."""
        return EvalSplit(self.inputs[rows], self.targets[rows], self.history[rows])


@dataclass
class SplitTensors:
    train: torch.Tensor  # [U, L + 1]: inputs are [:, :-1], next-item targets [:, 1:]
    user_items: torch.Tensor  # [U, S]: all of a user's items, for negative sampling
    valid: EvalSplit
    test: EvalSplit
    n_items: int
    max_len: int


def split_tensors(ds: Dataset, max_len: int) -> SplitTensors:
    starts, ends = ds.offsets[:-1], ds.offsets[1:]
    longest = int(ds.lengths.max())

    def split(target_pos: np.ndarray) -> EvalSplit:
        return EvalSplit(
            torch.from_numpy(window(ds.flat, starts, target_pos, max_len)),
            torch.from_numpy(ds.flat[target_pos].astype(np.int64)),
            torch.from_numpy(window(ds.flat, starts, target_pos, longest)),
        )

    return SplitTensors(
        train=torch.from_numpy(window(ds.flat, starts, ends - 2, max_len + 1)),
        user_items=torch.from_numpy(window(ds.flat, starts, ends, longest)),
        valid=split(ends - 2),
        test=split(ends - 1),
        n_items=ds.n_items,
        max_len=max_len,
    )
