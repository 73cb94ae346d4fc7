"""The background request-log writer: the request path only enqueues.

A bounded queue decouples requests from the database; one thread drains it in batches
(up to `batch_size` rows or `flush_ms`, one transaction per batch) and chains each row's
hash (service/db/chain.py). When an insert fails the batch goes to the spool file and
later batches follow it there, without touching the database, until a replay succeeds
(every `replay_interval_s`). A full queue is refused to the caller (the route answers
503), or, if configured, spooled on the caller's thread. `stop()` drains the queue to
the database or the spool, so a graceful shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Literal

from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from service.db.batching import STOP, collect, drain
from service.db.chain import Chain, new_writer_id
from service.db.rows import COLUMNS, T
from service.db.spool import Spool, default_spool_path
from service.settings import Settings

log = logging.getLogger("vigil.writer")
Overflow = Literal["reject", "spool"]


class QueueFull(Exception):
    """The log queue is full: the caller must refuse the request, not drop its record."""


class LogWriter:
    def __init__(
        self,
        engine: Engine,
        queue_size: int,
        batch_size: int,
        flush_ms: int,
        *,
        spool: Spool | None = None,
        overflow: Overflow = "reject",
        writer_id: str | None = None,
        replay_interval_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000.0
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.spool = spool or Spool(default_spool_path(engine.url.render_as_string(hide_password=False)))
        self.overflow = overflow
        self.chain = Chain(writer_id or new_writer_id())
        self.replay_interval_s = replay_interval_s
        self.written = self.failures = self.spooled = self.replayed = 0
        #: Ids queued or being written: feedback may name a request not yet in the database.
        self._inflight: set[str] = set()
        self._db_down = False
        self._spool_pending = self.spool.has_rows()  # left over from an earlier run: replay first
        self._next_replay = 0.0
        #: Guards the spool flag: an overflow append on a request thread may race a replay.
        self._flag = threading.Lock()
        #: Set when a full batch waits, so the writer need not wake for every record.
        self._full = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="vigil-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        row = {c: record.get(c) for c in COLUMNS}
        self._inflight.add(row["request_id"])
        if self._stopped:  # a straggler after shutdown still reaches durable storage
            self._spool_now([row])
            return
        try:
            self.queue.put_nowait(row)
            if self.queue.qsize() >= self.batch_size:
                self._full.set()
        except queue.Full as e:
            if self.overflow != "spool":
                self._inflight.discard(row["request_id"])
                raise QueueFull from e
            self._spool_now([row])

    def depth(self) -> int:
        return self.queue.qsize()

    def is_pending(self, request_id: str) -> bool:
        """True while a request's row is queued, being written, or waiting in the spool."""
        return request_id in self._inflight or self.spool.contains(request_id)

    def stop(self, timeout: float = 60.0) -> None:
        """Drain the queue to the database or the spool, try one last replay, end the thread."""
        if self._stopped:
            return
        self._stopped = True  # from now on submit() spools directly
        self.queue.put(STOP)
        self._full.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("request-log writer did not finish within %.0fs; %d rows still queued", timeout, self.depth())
        elif late := drain(self.queue):  # submitted while STOP was being queued
            self.chain.link(late)
            self._write(late)
        if self._spool_pending:
            log.error("database unavailable at shutdown: rows stay in %s and replay at the next start", self.spool.path)
        c = self.chain
        log.info("request-log chain %s ends at seq %d, hash %s", c.writer_id, c.seq, c.head)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            idle = self.replay_interval_s if self._spool_pending else None
            batch, stopping = collect(self.queue, self.batch_size, self.flush_s, idle, self._full)
            if batch:
                self.chain.link(batch)
                self._write(batch)
            if self._spool_pending and (stopping or time.monotonic() >= self._next_replay):
                self._replay()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not self._db_down:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(T), batch)
                self.written += len(batch)
                self._inflight.difference_update(r["request_id"] for r in batch)
                return
            except Exception:  # any driver or server error: the rows go to the spool
                self.failures += 1
                self._db_down = True
                log.exception("request-log insert of %d rows failed; spooling until the database is back", len(batch))
        self._spool_batch(batch)

    def _spool_now(self, rows: list[dict[str, Any]]) -> None:
        self.chain.link(rows)
        self._spool_batch(rows)

    def _spool_batch(self, rows: list[dict[str, Any]]) -> None:
        delay = 0.1
        while True:  # never drop: a full disk is retried loudly until it frees up
            try:
                self.spool.append(rows)
                break
            except OSError:
                log.exception("cannot append %d rows to spool %s; retrying in %.1fs", len(rows), self.spool.path, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.spooled += len(rows)
        self._inflight.difference_update(r["request_id"] for r in rows)
        with self._flag:
            if not self._spool_pending:
                self._spool_pending = True
                self._next_replay = time.monotonic() + self.replay_interval_s

    def _replay(self) -> None:
        try:
            n = self.spool.replay(self.engine, self.batch_size)
        except (SQLAlchemyError, OSError) as e:  # still down: try later, quietly (the outage was logged once)
            log.warning("spool replay failed (%s); next try in %.1fs", type(e).__name__, self.replay_interval_s)
            self._next_replay = time.monotonic() + self.replay_interval_s
            return
        self.replayed += n
        self._db_down = False
        with self._flag:  # rows appended after the replay read the file stay pending
            self._spool_pending = self.spool.has_rows()


def build_writer(engine: Engine, settings: Settings) -> LogWriter:
    """The writer the service runs, configured from settings."""
    url = engine.url.render_as_string(hide_password=False)
    return LogWriter(
        engine,
        settings.log_queue_size,
        settings.log_batch_size,
        settings.log_flush_ms,
        spool=Spool(settings.log_spool_path or default_spool_path(url)),
        overflow=settings.log_queue_full,
        writer_id=settings.log_writer_id,
        replay_interval_s=settings.log_replay_interval_s,
    )
