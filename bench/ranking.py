"""Benchmark full ranking: evaluation (`rank_split`) and recommendation (`Ranker.top_k`) in users/s.

Loads a trained model artifact with its dataset (and text artifact, for text
experts), then ranks the first `--users` test users `--repeats` times with one
torch thread and prints the best rate of each, with a checksum of the ranks and
lists, so two checkouts can be compared side by side on the same model:

    python bench/ranking.py --dataset D --model M [--text T] [--users 3000]
    PYTHONPATH=<older checkout> python bench/ranking.py ...   # the same, with that checkout's padcore

Loading the model and computing its item side once are not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import torch

import padcore
from padcore.batches import split_tensors
from padcore.config import TrainConfig
from padcore.dataset import load_dataset
from padcore.recommend import Users, ranker_from_artifacts
from padcore.trainer import rank_split


def best_rate(work, users: int, repeats: int) -> tuple[float, object]:
    """(users per second of the fastest of `repeats` runs, the last run's output)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = work()
        seconds.append(time.perf_counter() - start)
    return users / min(seconds), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text")
    p.add_argument("--users", type=int, default=3000, help="test users ranked (0 = all)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = load_dataset(args.dataset)
    ranker = ranker_from_artifacts(args.model, ds, args.text)
    test = split_tensors(ds, ranker.max_len).test
    n = args.users or len(test.targets)
    split = test.subset(torch.arange(n))
    rate, ranks = best_rate(lambda: rank_split(ranker.model, split, TrainConfig(), ranker.device), n, args.repeats)
    hr = 100 * float((ranks < 10).mean())
    print(f"padcore {padcore.__file__}")
    print(f"evaluation: {rate:,.0f} users/s  ({n:,} test users, {len(ranker.keys) - 1:,} items; HR@10 {hr:.3f}, "
          f"ranks sha1 {hashlib.sha1(np.minimum(ranks, 2**40).tobytes()).hexdigest()[:12]})")

    everyone = ranker.dataset_users(ds)
    users = Users(everyone.users[:n], everyone.offsets[: n + 1], everyone.flat[: everyone.offsets[n]])
    batches = list(ranker.batches(users))
    rate, lists = best_rate(lambda: [ranker.top_k(i, h, 10)[0] for _, i, h in batches], n, args.repeats)
    digest = hashlib.sha1(np.concatenate(lists).tobytes()).hexdigest()[:12]
    print(f"recommendation: {rate:,.0f} users/s  ({n:,} users, k = 10; lists sha1 {digest})")


if __name__ == "__main__":
    main()
