"""The background request-log writer: the request path only enqueues.

A bounded queue decouples requests from the database; one thread drains it in
batches (up to `batch_size` rows or `flush_ms`, one transaction per batch). A full
queue is reported to the caller (the route answers 503) rather than dropping a record.
`stop()` drains everything before returning, so a graceful shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine, insert

from service.db.tables import RequestRecord

#: Every column but the surrogate key: executemany needs the same keys in every row.
COLUMNS = tuple(c.name for c in RequestRecord.__table__.columns if c.name != "id")

log = logging.getLogger("vigil.writer")
_STOP = object()


class QueueFull(Exception):
    """The log queue is full: the caller must refuse the request, not drop its record."""


class LogWriter:
    def __init__(self, engine: Engine, queue_size: int, batch_size: int, flush_ms: int) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000.0
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.written = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="vigil-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        row = {c: record.get(c) for c in COLUMNS}
        try:
            self.queue.put_nowait(row)
        except queue.Full as e:
            raise QueueFull from e

    def depth(self) -> int:
        return self.queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        """Drain the queue to the database, then end the thread."""
        self.queue.put(_STOP)
        self._thread.join(timeout)

    def _collect(self) -> tuple[list[dict[str, Any]], bool]:
        first = self.queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=max(left, 0.0)) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._collect()
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        # Retry with backoff: a record is never dropped silently.
        delay = 0.1
        while True:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(RequestRecord), batch)
                self.written += len(batch)
                return
            except Exception:
                self.failures += 1
                log.exception("request-log insert of %d rows failed; retrying in %.1fs", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
