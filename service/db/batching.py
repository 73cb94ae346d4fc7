"""Taking batches off a queue: up to `size` items, or what came within `wait_s` of the first."""

from __future__ import annotations

import queue
import threading
from typing import Any

#: Put on the queue to end the consumer after everything before it.
STOP = object()


def collect(q: queue.Queue[Any], size: int, wait_s: float, idle_s: float | None, full: threading.Event) -> tuple[list[Any], bool]:
    """One batch, and whether STOP was seen. Waits at most `idle_s` for the first item
    (None: forever), so the caller can do periodic work while the queue is quiet.

    After the first item the consumer sleeps on `full`, which producers set once `size`
    items wait (and `stop` sets at once), instead of blocking in `get()`: a blocking get
    wakes this thread, and takes the GIL from the request path, once per record."""
    try:
        first = q.get(timeout=idle_s)
    except queue.Empty:
        return [], False
    if first is STOP:
        return [], True
    full.clear()  # before looking, so a producer's set() after this cannot be lost
    if q.qsize() < size - 1:
        full.wait(wait_s)
    batch = [first]
    for _ in range(min(q.qsize(), size - 1)):  # the only consumer: these items are there
        item = q.get_nowait()
        if item is STOP:
            return batch, True
        batch.append(item)
    return batch, False


def drain(q: queue.Queue[Any]) -> list[Any]:
    """Whatever is left on the queue, without waiting (STOP markers dropped)."""
    items = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return items
        if item is not STOP:
            items.append(item)
