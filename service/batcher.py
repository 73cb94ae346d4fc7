"""Micro-batching: concurrent callers' inputs become one batched computation.

One dedicated worker thread owns torch. It takes the first waiting job, then keeps
taking jobs until the batch holds `max_batch` inputs or `max_wait` has passed since
that first job arrived (so a request waits at most `max_wait`, and one that already
queued behind a busy worker does not wait again). The wait is spent only when the
previous batch found company: a lone client is served at once. The batch runs as one
computation, in chunks of at most `chunk` inputs (CPU forwards slow down per image
past a size), and each caller's future gets its own rows back on its event loop.

Callers never block: `submit` only enqueues. `stop` lets the worker finish every job
queued before it, so shutdown completes pending futures instead of dropping them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from models.pipeline import PipelineOutput
from service.handoff import post

log = logging.getLogger("vigil.batcher")
_STOP = object()


@dataclass
class Job:
    """One caller's inputs ``[n, C, H, W]`` and the future its rows are delivered to."""

    pixels: torch.Tensor
    future: asyncio.Future[PipelineOutput]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)
    #: Set by the caller when it gave up (timeout, disconnect): the worker skips the job.
    abandoned: bool = False


class Full(Exception):
    """The pending queue is at its bound; the caller should answer 503."""


class MicroBatcher:
    def __init__(
        self, compute: Callable[[torch.Tensor], PipelineOutput], max_batch: int, max_wait_s: float, chunk: int, max_pending: int
    ) -> None:
        self._compute = compute
        self.max_batch, self.max_wait_s, self.chunk = max_batch, max_wait_s, chunk
        self._queue: queue.Queue[Job | object] = queue.Queue(maxsize=max_pending)
        self._carry: Job | None = None  # a job that did not fit the previous batch
        #: Whether the last batch gathered several jobs. A lone client (batches of one)
        #: is then not made to wait for company that never comes; under concurrency it is.
        self._company = False
        self.batches = 0  # counters for tests and /metrics
        self.inputs = 0
        self.busy_s = 0.0  # seconds spent computing: utilisation = busy_s / uptime

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full as e:
            raise Full from e

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Ask the worker to end after the jobs already queued; blocks only while the queue is full."""
        self._queue.put(_STOP)

    def serve(self) -> None:
        """The worker thread's body: collect, compute, deliver, until `stop`."""
        stopping = False
        while not stopping:
            jobs, stopping = self._collect()
            live = [j for j in jobs if not j.abandoned]
            if live:
                self._run(live)

    def _collect(self) -> tuple[list[Job], bool]:
        first = self._carry if self._carry is not None else self._queue.get()
        self._carry = None
        if first is _STOP:
            return [], True
        assert isinstance(first, Job)
        jobs, rows = [first], len(first.pixels)
        deadline = first.enqueued + (self.max_wait_s if self._company else 0.0)
        while rows < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, True
            assert isinstance(item, Job)
            if rows + len(item.pixels) > self.max_batch:
                self._carry = item  # keep batches within max_batch; it leads the next one
                break
            jobs.append(item)
            rows += len(item.pixels)
        self._company = len(jobs) > 1
        return jobs, False

    def compute(self, x: torch.Tensor) -> PipelineOutput:
        """The batch's results, computed in chunks of at most `chunk` inputs (on the calling thread)."""
        return PipelineOutput.concat([self._compute(x[i : i + self.chunk]) for i in range(0, len(x), self.chunk)])

    def _run(self, jobs: list[Job]) -> None:
        t0 = time.perf_counter()
        try:
            out = self.compute(stack(jobs))
            self.busy_s += time.perf_counter() - t0
        except Exception as e:  # every caller of the batch hears of it; the worker lives on
            log.exception("inference failed for a batch of %d jobs", len(jobs))
            fail(jobs, e)
            return
        self.deliver(jobs, out)

    def deliver(self, jobs: list[Job], out: PipelineOutput) -> None:
        """Count the batch and hand each job its own rows of `out`."""
        self.batches += 1
        self.inputs += len(out.probs)
        bounds = [0]
        for j in jobs:
            bounds.append(bounds[-1] + len(j.pixels))
        post([(j.loop, j.future) for j in jobs], [out.rows(a, b) for a, b in itertools.pairwise(bounds)])


def stack(jobs: list[Job]) -> torch.Tensor:
    """The jobs' inputs as one batch, in job order."""
    return torch.cat([j.pixels for j in jobs]) if len(jobs) > 1 else jobs[0].pixels


def fail(jobs: list[Job], error: Exception) -> None:
    """Every caller of a batch gets the batch's error."""
    post([(j.loop, j.future) for j in jobs], [error] * len(jobs))


def start_worker(batcher: MicroBatcher, init: Callable[[], None]) -> threading.Thread:
    """Start the dedicated torch thread: `init` (thread count, ...) then the batch loop."""

    def body() -> None:
        init()
        batcher.serve()

    thread = threading.Thread(target=body, name="vigil-torch", daemon=True)
    thread.start()
    return thread
