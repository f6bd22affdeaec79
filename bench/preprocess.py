"""Benchmark `pad preprocess` on a synthetic log of MIND size.

Generates (untimed) ≈630k users, 80k items and 9.7M interactions in the
bring-your-own Parquet format, then runs `pad preprocess --source files:...` in
a child process and reports its wall time, peak resident memory and
interactions per second. Exits non-zero when the run breaks the budget
(2 minutes, 4 GiB).

    python bench/preprocess.py [--users 630000 --items 80000 --interactions 9700000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BUDGET_SECONDS = 120
BUDGET_BYTES = 4 << 30


def generate(folder: Path, n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> int:
    """Write interactions.parquet and items.parquet; returns the number of interactions."""
    rng = np.random.default_rng(seed)
    mean = n_interactions / n_users
    # Lengths from 3 up (some users fall under the 5-interaction minimum), item popularity Zipf-like.
    lengths = 2 + rng.geometric(1 / (mean - 2), size=n_users)
    users = np.repeat(np.arange(n_users), lengths)
    popularity = 1.0 / (np.arange(n_items) + 10.0)
    items = rng.choice(n_items, size=len(users), p=popularity / popularity.sum())
    stamps = rng.integers(1_570_000_000, 1_580_000_000, size=len(users))
    shuffle = rng.permutation(len(users))
    user_names = pa.array([f"U{u}" for u in range(n_users)])
    item_names = pa.array([f"N{i}" for i in range(n_items)])
    pq.write_table(
        pa.table(
            {
                "user": user_names.take(pa.array(users[shuffle])),
                "item": item_names.take(pa.array(items[shuffle])),
                "timestamp": pa.array(stamps[shuffle]),
            }
        ),
        folder / "interactions.parquet",
    )
    words = np.array("news market storm election team city health music film vote school price".split())
    titles = [f"{' '.join(rng.choice(words, size=6))} {i}" for i in range(n_items)]
    pq.write_table(pa.table({"item": item_names, "text": pa.array(titles)}), folder / "items.parquet")
    return len(users)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=630_000)
    parser.add_argument("--items", type=int, default=80_000)
    parser.add_argument("--interactions", type=int, default=9_700_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pad-bench-") as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "dataset"
        raw.mkdir()
        print(f"generating {args.users:,} users, {args.items:,} items, ~{args.interactions:,} interactions ...", flush=True)
        n = generate(raw, args.users, args.items, args.interactions)
        cmd = [sys.executable, "-m", "pad.cli", "preprocess", "--source", f"files:{raw}", "--out", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    if done.returncode != 0:
        print(f"preprocess failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    print(f"interactions      {n:,}")
    print(f"wall time         {wall:.1f} s   (budget {BUDGET_SECONDS} s)")
    print(f"peak RSS          {peak / 2**30:.2f} GiB   (budget {BUDGET_BYTES / 2**30:.0f} GiB)")
    print(f"throughput        {n / wall:,.0f} interactions/s")
    return 0 if wall < BUDGET_SECONDS and peak < BUDGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
