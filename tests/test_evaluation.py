"""Full-ranking evaluation in bounded chunks gives the brute-force ranks, whatever the chunk size."""

import numpy as np
import pytest
import torch

from padcore import trainer
from padcore.batches import EvalSplit
from padcore.config import TrainConfig
from padcore.metrics import UNREACHABLE

N_ITEMS, KEYS = 40, 13


class LookupModel(torch.nn.Module):
    """Scores from a fixed table row chosen by the sum of the real input items: exact in any chunk
    shape, and wrong if a chunk dropped a real item (padding adds nothing to the sum)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.table = torch.tensor(rng.normal(size=(KEYS, N_ITEMS + 1)).round(1))  # rounding makes ties
        self.largest = 0

    def item_side(self):
        return None

    def scores(self, seq: torch.Tensor, side) -> torch.Tensor:
        self.largest = max(self.largest, seq.shape[0] * (N_ITEMS + 1))
        return self.table[seq.sum(1) % KEYS]


def brute_force(model: LookupModel, split: EvalSplit) -> list[int]:
    ranks = []
    for u in range(len(split.targets)):
        scores = model.table[int(split.inputs[u].sum()) % KEYS].numpy()
        target, excluded = int(split.targets[u]), {0, *split.history[u].tolist()}
        keep = np.array([i not in excluded for i in range(N_ITEMS + 1)])
        ranks.append(UNREACHABLE if target in excluded else int((scores[keep] > scores[target]).sum()))
    return ranks


def random_split(n_users: int, seed: int = 1) -> EvalSplit:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, n_users)
    inputs = np.zeros((n_users, 8), dtype=np.int64)
    history = np.zeros((n_users, 10), dtype=np.int64)
    for u, n in enumerate(lengths):
        inputs[u, 8 - n:] = rng.integers(1, N_ITEMS + 1, n)
        history[u, 10 - n:] = inputs[u, 8 - n:]
    targets = rng.integers(1, N_ITEMS + 1, n_users)
    targets[:4] = inputs[:4, -1]  # repeat targets: never hits
    return EvalSplit(torch.tensor(inputs), torch.tensor(targets), torch.tensor(history))


@pytest.mark.parametrize("budget_users", [1, 3, 64])
def test_chunked_ranks_equal_brute_force(monkeypatch, budget_users):
    monkeypatch.setattr(trainer, "SCORE_BUDGET", budget_users * (N_ITEMS + 1))
    model, split = LookupModel(), random_split(50)
    got = trainer.rank_split(model, split, TrainConfig(eval_batch=16), torch.device("cpu"))
    assert got.tolist() == brute_force(model, split)
    # no chunk held more scores than the budget (nor more users than eval_batch)
    assert model.largest <= min(budget_users, 16) * (N_ITEMS + 1)
