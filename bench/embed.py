"""Benchmark text-embedding throughput (items/s) of an encoder, per torch thread count.

Encodes item titles through the same loop as `pad embed` (longest first, in
batches; `padcore.text.encode_into`) into an in-memory table. Titles are the
Prime Pantry ones from $PAD_DATA_HOME when present, else a fixed synthetic set
of product titles. Loading the model and one warm-up batch are not timed.

    python bench/embed.py [--items 2000] [--threads 1 2] [--batch-size 64]
    python bench/embed.py --encoder llm2vec --base-model DIR --adapter none --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from padcore.download import data_home
from padcore.encoders import EncoderOptions, resolve, resolve_device
from padcore.text import encode_into


def titles(n: int, seed: int = 0) -> tuple[list[str], str]:
    """`n` titles and where they came from."""
    csv = data_home() / "prime_pantry" / "metadata_Prime_Pantry.csv"
    if csv.is_file():
        found = pd.read_csv(csv)["title"].dropna().astype(str).tolist()
        return found[:n], f"Prime Pantry titles ({csv})"
    rng = np.random.default_rng(seed)
    brands = "Jif Skippy Tide Lipton Quaker Barilla Heinz Kellogg's Folgers Bounty Planters Nabisco".split()
    goods = "Peanut Butter|Laundry Detergent|Green Tea Bags|Rolled Oats|Spaghetti Pasta|Tomato Ketchup|Corn Flakes|Ground Coffee|Paper Towels|Salted Peanuts|Wheat Crackers|Dish Soap".split("|")
    extras = "Creamy|Organic|Original Scent|Family Size|Low Sodium|Gluten Free|Value Pack|Classic Roast|Extra Crunchy".split("|")
    sizes = ["16 oz", "40 Ounce", "92 fl oz", "100 Count", "Pack of 6", "2 lb", "12 Rolls"]
    made = [
        f"{rng.choice(brands)} {' '.join(rng.choice(extras, size=rng.integers(0, 3)))} {rng.choice(goods)}, {rng.choice(sizes)}"
        for _ in range(n)
    ]
    return made, "synthetic product titles (seed 0)"


def run(encoder_name: str, options: EncoderOptions, device: str, texts: list[str], threads: int, batch_size: int) -> dict:
    torch.set_num_threads(threads)
    encoder = resolve(encoder_name, options).load(device)
    encoder.encode(texts[:batch_size])  # warm-up: lazy initialisation, allocator, kernels
    table = np.zeros((len(texts), encoder.dim), dtype=np.float16)
    cpu0 = time.process_time()
    seconds = encode_into(table, 0, texts, 1, encoder, batch_size)
    cpu = time.process_time() - cpu0  # on a shared machine: what the run cost, whoever else ran
    return {
        "threads": threads,
        "items": len(texts),
        "seconds": round(seconds, 2),
        "items_per_second": round(len(texts) / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "items_per_cpu_second": round(len(texts) / cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--base-model", help="llm2vec base model")
    parser.add_argument("--adapter", help="llm2vec adapter")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--items", type=int, default=2000, help="titles to encode per run (default 2000)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts (default 1 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    options = EncoderOptions.from_dict({k: v for k, v in (("base_model", args.base_model), ("adapter", args.adapter)) if v})
    device = resolve_device(args.device)
    texts, source = titles(args.items)
    print(f"{args.encoder} on {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}); {len(texts)} {source}; batch {args.batch_size}")
    results = []
    for threads in args.threads:
        t0 = time.perf_counter()
        result = run(args.encoder, options, device, texts, threads, args.batch_size)
        result["load_and_warmup_seconds"] = round(time.perf_counter() - t0 - result["seconds"], 2)
        results.append(result)
        print(f"  threads {threads}: {result['items_per_second']:>8,.1f} items/s ({result['seconds']} s wall, "
              f"{result['items_per_cpu_second']:,.1f} items per CPU-second), load {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"encoder": args.encoder, "device": device, "source": source, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
