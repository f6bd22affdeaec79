"""Load test of `pad serve` on a store's champion (the Prime Pantry model of `pad run`), loopback only.

Starts `pad serve` on 127.0.0.1 (a subprocess of this Python, which needs the
[serve] extra: run it with .venv-serve/bin/python) on a copy of the store, so the
store itself is never changed, then measures
- one request alone (one history, k = 10), sent one after another: p50 / p99;
- open-loop load: requests sent at a fixed arrival rate (Poisson, seeded) whatever
  the answers, for each of --rates; per rate the achieved rate, p50 / p95 / p99
  (from each request's scheduled send time, so a server that falls behind is
  charged for the wait) and the errors;
- a mixed run at --mixed-rate: --bad-share of the requests malformed (each must be
  a 400) and, halfway, the champion swapped to another version of the store (no
  valid request may fail, and answers must come from both versions);
- `pad recommend` over every user of the dataset, in this process: users/s.
Histories are the dataset users' own, oldest first. Every phase is bounded by its
request count and its seconds; a request gets --timeout seconds.

    .venv-serve/bin/python bench/serve.py --store runs/store --dataset runs/pad-<time>/preprocess/dataset
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from padcore.dataset import load_dataset  # noqa: E402
from padcore.steps import recommend  # noqa: E402
from padcore.store import Store  # noqa: E402

BAD = [  # malformed requests, each a 400 naming what is wrong
    b'{"instances": [{"items": ["B00099XNXS"], "k": 0}]}',
    b'{"rows": []}',
    b'{"instances": [{"items": "B00099XNXS"}]}',
    b'{"instances": []}',
    b'{"instances": [{"items": [["B00099XNXS"]]}]}',
    b'{"instances": [{"items": ["B00099XNXS"], "k": "10"}]}',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: str, threads: int, extra: list[str]) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"pad-serve-bench-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "pad", "serve", "--store", store, "--host", "127.0.0.1",
                             "--port", str(port), "--poll", "1", *extra], cwd=ROOT, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"pad serve exited with {proc.returncode}; log in {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/pad", timeout=2) as resp:
                if json.loads(resp.read()).get("ready"):
                    return proc, port, log
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"pad serve not ready; log in {log}")


class Client:
    """HTTP/1.1 POSTs to one path over kept-alive loopback connections, as many at once as asked."""

    def __init__(self, port: int, path: str, timeout: float):
        self.port, self.timeout, self.idle = port, timeout, []
        self.head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     "Content-Length: ").encode()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            lines = head.decode("latin-1").lower().split("\r\n")
            length = next(int(line.split(":", 1)[1]) for line in lines if line.startswith("content-length:"))
            data = await asyncio.wait_for(reader.readexactly(length), self.timeout)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return int(lines[0].split()[1]), data

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@dataclass
class Phase:
    """What one open-loop phase saw."""

    rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)  # valid requests answered 200, from scheduled send
    errors: dict[str, int] = field(default_factory=dict)  # valid requests that failed, by what happened
    bad: dict[str, int] = field(default_factory=dict)  # malformed requests, by status
    versions: dict[str, int] = field(default_factory=dict)  # valid answers per version
    answered: int = 0  # requests answered with any status
    span: float = 0.0  # first scheduled send to last answer

    def count(self, table: dict, key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        return {"offered_per_s": self.rate, "seconds": self.seconds, "valid_answered": len(self.latencies),
                "achieved_per_s": self.answered / self.span if self.span else 0.0,
                "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                "p99_ms": float(np.percentile(lat, 99)), "errors": self.errors, "bad": self.bad,
                "versions": self.versions}


async def open_loop(client: Client, bodies: list[bytes], rate: float, seconds: float, rng: np.random.Generator,
                    bad_share: float = 0.0, halfway=None) -> Phase:
    """Send requests at `rate`/s (exponential gaps) for `seconds`, whatever the answers; `halfway()` runs in a
    thread at the middle."""
    n = int(rate * seconds)
    sends = np.cumsum(rng.exponential(1 / rate, n))
    bad = rng.random(n) < bad_share
    picks = rng.integers(0, len(bodies), n)
    phase, tasks = Phase(rate, seconds), []
    loop = asyncio.get_running_loop()

    async def one(i: int, due: float) -> None:
        body = BAD[i % len(BAD)] if bad[i] else bodies[picks[i]]
        try:
            status, data = await client.post(body)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            phase.count(phase.bad if bad[i] else phase.errors, type(exc).__name__)
            return
        phase.answered += 1
        if bad[i]:
            phase.count(phase.bad, str(status))
        elif status != 200:
            phase.count(phase.errors, str(status))
        else:
            phase.latencies.append(loop.time() - due)
            phase.count(phase.versions, json.loads(data)["predictions"][0]["version"])
        phase.span = max(phase.span, loop.time() - start)

    start = loop.time()
    swap = None
    for i, at in enumerate(sends):
        wait = start + at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if halfway and swap is None and at >= seconds / 2:
            swap = loop.run_in_executor(None, halfway)
        tasks.append(asyncio.ensure_future(one(i, start + at)))
    await asyncio.gather(*tasks)
    if swap is not None:
        await swap
    return phase


def print_phase(name: str, s: dict) -> None:
    errors = sum(s["errors"].values())
    print(f"{name}: offered {s['offered_per_s']:,.0f}/s for {s['seconds']:g} s, achieved {s['achieved_per_s']:,.0f}/s; "
          f"p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; "
          f"errors {errors}{' ' + json.dumps(s['errors']) if errors else ''}"
          + (f"; malformed answered {json.dumps(s['bad'])}" if s["bad"] else ""), flush=True)


async def load(port: int, bodies: list[bytes], args: argparse.Namespace, swap) -> dict:
    client = Client(port, "/v1/models/pad:predict", args.timeout)
    rng = np.random.default_rng(0)
    out = {}
    single = []
    for body in bodies[:20]:  # warm-up
        await client.post(body)
    for body in bodies[: args.requests]:
        t0 = time.perf_counter()
        status, _ = await client.post(body)
        assert status == 200, status
        single.append((time.perf_counter() - t0) * 1000)
    out["alone"] = {"requests": args.requests, "p50_ms": float(np.percentile(single, 50)),
                    "p99_ms": float(np.percentile(single, 99))}
    print(f"one request alone: p50 {out['alone']['p50_ms']:.1f} ms, p99 {out['alone']['p99_ms']:.1f} ms "
          f"({args.requests} requests one after another)", flush=True)
    out["rates"] = []
    for rate in args.rates:
        s = (await open_loop(client, bodies, rate, args.seconds, rng)).summary()
        print_phase(f"rate {rate:,.0f}/s", s)
        out["rates"].append(s)
        await asyncio.sleep(1.0)  # let a queue left behind drain
    if args.mixed_rate:
        s = (await open_loop(client, bodies, args.mixed_rate, args.mixed_seconds, rng, args.bad_share,
                             swap)).summary()
        print_phase(f"mixed ({args.bad_share:.0%} malformed, champion swapped halfway)", s)
        print(f"  valid answers per version: {json.dumps(s['versions'])}", flush=True)
        out["mixed"] = s
    client.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="model store (a folder) whose champion is served")
    parser.add_argument("--dataset", required=True, help="dataset artifact: the users whose histories are sent")
    parser.add_argument("--requests", type=int, default=300, help="requests sent one after another (default 300)")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[100, 300, 1000, 3000],
                        help="arrival rates, requests/s (default 100,300,1000,3000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per rate (default 5)")
    parser.add_argument("--mixed-rate", type=float, default=300.0, help="rate of the mixed run (default 300; 0: none)")
    parser.add_argument("--mixed-seconds", type=float, default=10.0, help="seconds of the mixed run (default 10)")
    parser.add_argument("--bad-share", type=float, default=0.1, help="share of malformed requests there (0.1)")
    parser.add_argument("--swap-to", help="version the mixed run makes champion halfway (default: the newest other)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a request may take (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of recommend")
    parser.add_argument("--server-args", default="", help="more `pad serve` options, e.g. '--batch-window 1'")
    parser.add_argument("--no-recommend", action="store_true", help="skip the `pad recommend` measure")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if str(args.store).startswith("gs://"):
        raise SystemExit("--store: give a local folder (the bench serves a copy of it)")

    ds = load_dataset(args.dataset)
    keys = ds.item_column("item")
    rng = np.random.default_rng(0)
    users = rng.choice(ds.n_users, size=5000, replace=True)
    bodies = [json.dumps({"instances": [{"items": [str(keys[i]) for i in ds.sequence(u)], "k": 10}]}).encode()
              for u in users]
    store = Store(args.store)
    version = store.champion()
    others = [v["version"] for v in store.versions() if v["version"] != version]
    swap_to = args.swap_to or (others[-1] if others else None)
    if args.mixed_rate and swap_to is None:
        raise SystemExit(f"{args.store}: the mixed run swaps the champion to another version, and the store holds "
                         "one; publish another (pad publish --no-promote ...) or pass --mixed-rate 0")
    print(f"champion {version} of {args.store} (swap to {swap_to}); {ds.n_users:,} users, {ds.n_items:,} items; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.threads} torch thread(s); pad serve {args.server_args or '(defaults)'}", flush=True)

    with tempfile.TemporaryDirectory(prefix="pad-serve-bench-") as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store, copy, symlinks=True)
        proc, port, log = start_server(str(copy), args.threads, args.server_args.split())
        try:
            results = asyncio.run(load(port, bodies, args, lambda: Store(copy).promote(swap_to)))
        finally:
            proc.terminate()
            proc.wait(30)
        print(f"server log: {log}", flush=True)

    results.update(version=version, swap_to=swap_to, threads=args.threads, server_args=args.server_args,
                   machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    if not args.no_recommend:
        import torch

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = recommend(store.open(), Path(tmp) / "rec.parquet", dataset=args.dataset, k=10)
            seconds = time.perf_counter() - t0
        print(f"pad recommend: {summary['users']:,} users in {seconds:.1f} s = {summary['users'] / seconds:,.0f} "
              "users/s (k = 10, loading the version included)", flush=True)
        results["recommend_users_per_s"] = summary["users"] / seconds
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
