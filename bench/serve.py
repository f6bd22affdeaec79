"""Benchmark serving and batch recommendation of a store's champion (the Prime Pantry model of `pad run --store`).

Starts `pad serve` on 127.0.0.1 (a subprocess of this Python, which needs the
[serve] extra: run it with .venv-serve/bin/python), then measures
- the latency of one request (one history, k = 10), sequentially: p50 / p99;
- the throughput of batches of 64 concurrent requests: requests/s;
and, in this process, `pad recommend` over every user of the dataset: users/s.
Histories are the dataset users' own, oldest first. Every request is sent to
127.0.0.1 only, and the loops are bounded by --requests and --batches.

    .venv-serve/bin/python bench/serve.py --store runs/store --dataset runs/pad-<time>/preprocess/dataset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from padcore.dataset import load_dataset  # noqa: E402
from padcore.steps import recommend  # noqa: E402
from padcore.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> float:
    """Seconds for one predict call."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        json.loads(resp.read())
    return time.perf_counter() - t0


def start_server(store: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"pad-serve-bench-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pad", "serve", "--store", store, "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}/v1/models/pad"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"pad serve exited with {proc.returncode}; log in {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if json.loads(resp.read()).get("ready"):
                    return proc, url + ":predict"
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"pad serve not ready; log in {log.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="model store whose champion is served")
    parser.add_argument("--dataset", required=True, help="dataset artifact: the users whose histories are sent")
    parser.add_argument("--requests", type=int, default=300, help="sequential single requests (default 300)")
    parser.add_argument("--batches", type=int, default=10, help="batches of 64 concurrent requests (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of recommend")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    ds = load_dataset(args.dataset)
    keys = ds.item_column("item")
    rng = np.random.default_rng(0)
    users = rng.choice(ds.n_users, size=max(args.requests, 64 * args.batches), replace=True)
    bodies = [json.dumps({"instances": [{"items": [str(keys[i]) for i in ds.sequence(u)], "k": 10}]}).encode()
              for u in users]
    version = Store(args.store).champion()
    print(f"champion {version} of {args.store}; {ds.n_users:,} users, {ds.n_items:,} items; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.threads} torch thread(s)", flush=True)

    proc, url = start_server(args.store, args.threads)
    try:
        for body in bodies[:20]:  # warm-up
            post(url, body)
        single = np.array([post(url, body) for body in bodies[: args.requests]]) * 1000
        rates = []
        with ThreadPoolExecutor(64) as pool:
            for b in range(args.batches):
                batch = bodies[b * 64 : (b + 1) * 64]
                t0 = time.perf_counter()
                list(pool.map(lambda body: post(url, body), batch))
                rates.append(len(batch) / (time.perf_counter() - t0))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"one request: p50 {np.percentile(single, 50):.1f} ms, p99 {np.percentile(single, 99):.1f} ms "
          f"({args.requests} sequential requests)", flush=True)
    print(f"64 concurrent requests: {np.median(rates):.0f} requests/s (median of {args.batches} batches; "
          f"min {min(rates):.0f}, max {max(rates):.0f})", flush=True)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = recommend(Store(args.store).open(), Path(tmp) / "rec.parquet", dataset=args.dataset, k=10)
        seconds = time.perf_counter() - t0
    print(f"pad recommend: {summary['users']:,} users in {seconds:.1f} s = {summary['users'] / seconds:,.0f} users/s "
          "(k = 10, loading the version included)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "version": version, "threads": args.threads, "p50_ms": float(np.percentile(single, 50)),
            "p99_ms": float(np.percentile(single, 99)), "batch64_requests_per_s": float(np.median(rates)),
            "recommend_users_per_s": summary["users"] / seconds}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
