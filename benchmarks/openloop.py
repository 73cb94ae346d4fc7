"""An open-loop HTTP load generator: requests start on a fixed schedule, answered or not.

A closed loop (benchmarks/loadgen.py) slows down with the server and so can never
overload it; an open loop keeps arriving at `rate` per second, which is what an
overload test needs. Each request borrows an idle keep-alive connection or opens one,
up to `max_conns`; past that the generator counts the request as `client_saturated`
instead of growing without bound. Loopback only, and it stops by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """One Content-Length framed response (uvicorn's JSON answers): status and headers."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split(" ", 2)[1]), headers


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    ok_latency: list[float] = field(default_factory=list)  # seconds, 200 answers only
    shed_latency: list[float] = field(default_factory=list)  # seconds, 503 answers
    retry_after_missing: int = 0


class Pool:
    def __init__(self, host: str, port: int, max_conns: int) -> None:
        self.host, self.port, self.max_conns = host, port, max_conns
        self.idle: list[Conn] = []
        self.open = 0

    async def take(self) -> Conn | None:
        if self.idle:
            return self.idle.pop()
        if self.open >= self.max_conns:
            return None
        self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.open -= 1
            raise

    def give(self, conn: Conn) -> None:
        self.idle.append(conn)

    def drop(self, conn: Conn) -> None:
        self.open -= 1
        conn[1].close()

    def close(self) -> None:
        for _, w in self.idle:
            w.close()


async def one(pool: Pool, req: bytes, tally: Tally) -> None:
    try:
        conn = await pool.take()
    except OSError:
        tally.codes["connect_error"] += 1
        return
    if conn is None:
        tally.codes["client_saturated"] += 1
        return
    t0 = time.perf_counter()
    try:
        conn[1].write(req)
        status, headers = await read_response(conn[0])
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, KeyError, ValueError):
        pool.drop(conn)
        tally.codes["connection_error"] += 1
        return
    dt = time.perf_counter() - t0
    tally.codes[str(status)] += 1
    if status == 200:
        tally.ok_latency.append(dt)
    elif status == 503:
        tally.shed_latency.append(dt)
        tally.retry_after_missing += "retry-after" not in headers
    pool.give(conn)


async def run(host: str, port: int, reqs: list[bytes], rate: float, seconds: float, max_conns: int = 256) -> Tally:
    """Start round(rate * seconds) requests on schedule, then wait (at most 30 s) for the stragglers."""
    pool, tally, tasks = Pool(host, port, max_conns), Tally(), set()
    start = time.perf_counter()
    for i in range(round(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(pool, reqs[i % len(reqs)], tally))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    pool.close()
    return tally
