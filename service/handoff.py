"""Handing results from the torch thread back to the callers' event loops.

Futures are not thread-safe: the worker never touches one. It schedules one callback
per event loop (usually there is one) that resolves all of that loop's futures, so a
batch of 64 costs one wake-up of the loop, not 64.
"""

from __future__ import annotations

import asyncio
import logging

from models.pipeline import PipelineOutput

log = logging.getLogger("vigil.batcher")

Result = PipelineOutput | Exception
Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[PipelineOutput]"]


def post(waiters: list[Waiter], results: list[Result]) -> None:
    """Deliver `results[i]` to `waiters[i]`'s future, on that future's loop (thread-safe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[PipelineOutput], Result]]] = {}
    for (loop, fut), r in zip(waiters, results, strict=True):
        by_loop.setdefault(loop, []).append((fut, r))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, items)
        except RuntimeError:  # that loop is closed: its callers are gone
            log.warning("dropping %d results for a closed event loop", len(items))


def _deliver(items: list[tuple[asyncio.Future[PipelineOutput], Result]]) -> None:
    # Runs on the callers' loop; a caller that timed out or left has a cancelled future.
    for fut, r in items:
        if fut.done():
            continue
        if isinstance(r, Exception):
            fut.set_exception(r)
        else:
            fut.set_result(r)
