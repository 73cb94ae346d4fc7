"""Overload test: `python -m benchmarks.stress` (about 90 s; loopback only, stops by itself).

1. start `vigil serve` as a user would (shipped bundle, SQLite request log);
2. normal latency: one client, one request at a time;
3. sustainable rate: the closed-loop load generator at concurrency 16;
4. overload: an open loop at twice that rate for 30 s, sampling the server's memory;
5. recovery: one client again, from the moment the overload's arrivals stop (answers
   to it still in flight), until latency is back to normal.
`client_saturated` counts requests the generator did not send because its own bound
of 256 open connections was reached (every connection waiting on an answer).
It prints what issue 8 asks to show: no 5xx other than 503 (each with Retry-After),
memory bounded, and how many seconds the service took to recover its normal latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import openloop
from benchmarks.loadgen import request_bytes
from benchmarks.run import write_images
from benchmarks.serve import _wait_ready, free_port, load, peak_rss_mb


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


async def sample_rss(pid: int, out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        await asyncio.sleep(0.5)


async def probe(port: int, req: bytes, seconds: float) -> list[tuple[float, float, int]]:
    """Sequential requests on one connection: (seconds since start, latency s, status)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out, start = [], time.perf_counter()
    while (t0 := time.perf_counter()) - start < seconds:
        writer.write(req)
        status, _ = await openloop.read_response(reader)
        out.append((t0 - start, time.perf_counter() - t0, status))
    writer.close()
    return out


def recovered_after(probes: list[tuple[float, float, int]], normal_s: float, window: int = 10) -> float | None:
    """First time from which the next `window` probes are all 200 with median latency <= 2x normal."""
    for i in range(len(probes) - window + 1):
        w = probes[i : i + window]
        if all(s == 200 for _, _, s in w) and statistics.median(lat for _, lat, _ in w) <= 2 * normal_s:
            return round(w[0][0], 2)
    return None


def ms(xs: list[float], q: float) -> float | None:
    return round(statistics.quantiles(xs, n=100, method="inclusive")[q - 1] * 1000, 1) if len(xs) > 1 else None


async def overload(pid: int, port: int, reqs: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    stop, mem = asyncio.Event(), []
    sampler = asyncio.create_task(sample_rss(pid, mem, stop))

    async def probe_after_load() -> list[tuple[float, float, int]]:
        await asyncio.sleep(seconds)  # from the moment arrivals stop, stragglers still in flight
        return await probe(port, reqs[0], 10.0)

    tally, recovery = await asyncio.gather(openloop.run("127.0.0.1", port, reqs, rate, seconds), probe_after_load())
    stop.set()
    await sampler
    return {"tally": tally, "rss": mem, "recovery": recovery}


def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vigil-stress-"))
    images = write_images(work / "images", 16)
    port = free_port()
    reqs = [request_bytes(f"127.0.0.1:{port}", "/v1/predict", p.read_bytes()) for p in sorted(images.glob("*.png"))]
    env = {**os.environ, "VIGIL_DATABASE_URL": f"sqlite:///{work / 'log.db'}", "VIGIL_LOG_FORMAT": "text"}
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--migrate"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, proc)
            normal = asyncio.run(probe(port, reqs[0], 3.0))
            normal_s = statistics.median(lat for _, lat, _ in normal)
            sustainable = load(proc.pid, port, images, 16, args.measure_s, 2.0)["throughput"]
            rss_before = rss_mb(proc.pid)
            r = asyncio.run(overload(proc.pid, port, reqs, 2 * sustainable, args.seconds))
            peak = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    t: openloop.Tally = r["tally"]
    codes = dict(sorted(t.codes.items()))
    return {
        "normal_latency_ms": round(normal_s * 1000, 2),
        "sustainable_rate_per_s": sustainable,
        "offered_rate_per_s": round(2 * sustainable, 1),
        "overload_seconds": args.seconds,
        "answers": codes,
        "5xx_other_than_503": sum(n for c, n in codes.items() if c.startswith("5") and c != "503"),
        "503_without_retry_after": t.retry_after_missing,
        "ok_latency_ms_p50_p99": [ms(t.ok_latency, 50), ms(t.ok_latency, 99)],
        "shed_latency_ms_p50_p99": [ms(t.shed_latency, 50), ms(t.shed_latency, 99)],
        "server_rss_mb_before_max_peak": [rss_before, max(r["rss"]), peak],
        "recovered_normal_latency_after_s": recovered_after(r["recovery"], normal_s),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="overload duration")
    p.add_argument("--measure-s", type=float, default=5.0, help="duration of the sustainable-rate measurement")
    print(json.dumps(main(p.parse_args()), indent=2))
