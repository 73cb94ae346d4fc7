"""A closed-loop HTTP load generator, run as its own process: `python -m benchmarks.loadgen`.

C connections (keep-alive) each send one request, wait for the answer, and send the
next, for a fixed time after a warm-up. HTTP/1.1 is spoken directly over asyncio
streams: a general client (httpx) spends several times more CPU per request, which on
a 2-core machine would be taken from the server being measured. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length framed, as uvicorn sends JSON); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
    await reader.readexactly(length)
    return status


async def client(host: str, port: int, reqs: list[bytes], start: float, warm_end: float, end: float, out: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while (t0 := time.perf_counter()) < end:
            writer.write(reqs[i % len(reqs)])
            i += 1
            status = await read_response(reader)
            t1 = time.perf_counter()
            codes[0] = codes.get(0, 0) + 1  # every request, warm-up included (for CPU per request)
            if t0 >= warm_end:  # requests started during the warm-up are not counted
                out.append(t1 - t0)
                codes[status] = codes.get(status, 0) + 1
    finally:
        writer.close()


def percentile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000, method="inclusive")[int(q * 10) - 1] if len(xs) > 1 else xs[0]


async def main(args: argparse.Namespace) -> dict[str, float | int | dict[int, int]]:
    bodies = [p.read_bytes() for p in sorted(Path(args.images).glob("*.png"))]
    reqs = [request_bytes(f"{args.host}:{args.port}", args.path, b) for b in bodies]
    start = time.perf_counter()
    warm_end, end = start + args.warmup, start + args.warmup + args.duration
    lat: list[float] = []
    codes: dict[int, int] = {}
    # Stagger the clients' first request so they do not all start in the same tick.
    workers = [client(args.host, args.port, reqs[k:] + reqs[:k], start, warm_end, end, lat, codes) for k in range(args.concurrency)]
    await asyncio.gather(*workers)
    measured = time.perf_counter() - warm_end
    ok = codes.get(200, 0)
    sent = codes.pop(0, 0)
    return {
        "concurrency": args.concurrency,
        "requests": len(lat),
        "requests_with_warmup": sent,
        "status_codes": codes,
        "seconds": round(measured, 3),
        "throughput": round(ok / measured, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p95_ms": round(percentile(lat, 95) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/predict")
    p.add_argument("--images", required=True, help="folder of *.png request bodies, sent round-robin")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    print(json.dumps(asyncio.run(main(p.parse_args()))))
