"""The background request-log writer: the request path only enqueues.

A bounded queue decouples requests from the database; one thread drains it in batches
(up to `batch_size` rows or `flush_ms`, one transaction per batch) and chains each row's
hash (service/db/chain.py). When an insert fails the batch goes to the spool file and
later batches follow it there, without touching the database, until a replay succeeds
(every `replay_interval_s`). A full queue is refused to the caller (the route answers
503), or, if configured, spooled on the caller's thread. `stop()` drains the queue to
the database or the spool, so a graceful shutdown loses nothing; each queued row is also
in the process's journal (service/db/journal.py), from which the next writer on the same
spool stores it if the process is killed before it could.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from service.db.batching import STOP, collect, drain
from service.db.chain import Chain, new_writer_id
from service.db.fallback import Fallback
from service.db.journal import Journal, orphans, unstored
from service.db.rows import COLUMNS, T, to_json
from service.db.spool import Spool, default_spool_path
from service.db.watchdog import Watchdog
from service.settings import Settings

log = logging.getLogger("vigil.writer")
#: Seconds between looks for the journals of killed processes: a replica killed and not
#: restarted leaves its rows to the processes still running on the same spool.
ADOPT_EVERY_S = 30.0
Overflow = Literal["reject", "spool"]
#: A database call is broken when it makes no progress for this many times
#: VIGIL_LOG_WRITE_TIMEOUT_S: past the server's own statement and lock timeouts, with room for
#: the error's way back, a call still waiting has a server that no longer answers.
STALL_FACTOR = 2.0


class QueueFull(Exception):
    """The log queue is full: the caller must refuse the request, not drop its record."""


def storable(value: Any) -> Any:
    """`value`, with any NUL character in text replaced by U+FFFD: PostgreSQL refuses NUL in
    text columns, and a refusal's message or path may quote a client's NUL. Replaced here,
    before the row is hashed, so the chain covers exactly what is stored."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


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
        stall_limit_s: float | None = None,
    ) -> None:
        self.engine = engine
        #: Breaks a database call that makes no progress for `stall_limit_s` (a server that
        #: hangs where its own timeouts cannot fire); None: calls are bounded by the server only.
        self.watchdog = Watchdog(engine, stall_limit_s) if stall_limit_s is not None else None
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000.0
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        spool = spool or Spool(default_spool_path(engine.url.render_as_string(hide_password=False)))
        self.fallback = Fallback(spool, replay_interval_s, batch_size)
        if self.watchdog is not None:
            spool.progress, spool.waiting = self.watchdog.spool_progress, self.watchdog.paused
        self.overflow = overflow
        self.journal = Journal(spool.path)
        #: When to look next for the journals of killed processes: at once at the start
        #: (a restart after a kill finds its predecessor's), then every `adopt_every_s`.
        self._adopt_at = 0.0
        self.adopt_every_s = ADOPT_EVERY_S
        self.adopted = 0
        self.chain = Chain(writer_id or new_writer_id())
        self.written = self.failures = 0
        #: Ids queued or being written, with their HTTP status: feedback may name a request
        #: not yet in the database, and must still learn whether it was refused.
        self._inflight: dict[str, int] = {}
        self._db_down = False
        #: Set when a full batch waits, so the writer need not wake for every record.
        self._full = threading.Event()
        self._stopped = False
        #: Set by stop() when it gave up on a stuck writer thread and rescued what it held: the
        #: thread, once unstuck, ends instead of replaying for the rest of the process.
        self._abandoned = False
        #: The batch being inserted, for `stop()` to rescue if the insert hangs. Taking a batch
        #: off the queue and publishing it here happen under `_handoff`, so a rescue never
        #: catches a batch in between (in neither the queue nor `_writing`).
        self._writing: list[dict[str, Any]] = []
        self._handoff = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vigil-log-writer", daemon=True)

    def start(self) -> None:
        if self.watchdog is not None:
            self.watchdog.start()
        self._thread.start()

    def _database(self) -> AbstractContextManager[None]:
        """Around every call into the database, for the watchdog to time."""
        return self.watchdog.section() if self.watchdog is not None else nullcontext()

    def submit(self, record: dict[str, Any]) -> None:
        row = {c: storable(record.get(c)) for c in COLUMNS}
        self._inflight[row["request_id"]] = row["http_status"]
        if self._stopped:  # a straggler after shutdown still reaches durable storage
            self._spool_now([row])
            return
        try:
            self.journal.add(row["request_id"], to_json(row), lambda: self.queue.put_nowait(row))
            if self.queue.qsize() >= self.batch_size:
                self._full.set()
        except queue.Full as e:
            if self.overflow != "spool":
                self._inflight.pop(row["request_id"], None)
                raise QueueFull from e
            self._spool_now([row])

    @property
    def spooled(self) -> int:
        return self.fallback.spooled

    @property
    def replayed(self) -> int:
        return self.fallback.replayed

    @property
    def database_up(self) -> bool:
        """False from a failed insert until a replay succeeds (rows go to the spool meanwhile)."""
        return not self._db_down

    def depth(self) -> int:
        return self.queue.qsize()

    def pending_status(self, request_id: str) -> int | None:
        """The HTTP status of a request's row while it is queued, being written, or waiting in
        the spool; None when it is none of those."""
        status = self._inflight.get(request_id)
        return status if status is not None else self.fallback.spool.status_of(request_id)

    def stop(self, timeout: float = 60.0) -> None:
        """Drain the queue to the database or the spool, try one last replay, end the thread.
        Past `timeout` (a database that hangs rather than refuses) the rows still queued, and
        the batch being inserted, go to the spool: the orchestrator's kill would lose them."""
        if self._stopped:
            return
        self._stopped = True  # from now on submit() spools directly
        deadline = time.monotonic() + timeout
        try:
            # Bounded: on a full queue (a writer stuck on a full disk) a plain put waited past
            # the orchestrator's grace period, and the kill lost every queued row.
            self.queue.put(STOP, timeout=timeout)
        except queue.Full:
            pass  # the writer thread is stuck: the rescue below takes what is queued
        self._full.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        saved = True
        if self._thread.is_alive():
            saved = self._rescue(timeout)
            self._abandoned = True
        elif late := drain(self.queue):  # submitted while STOP was being queued
            self.chain.link(late)
            try:
                self._write(late, deadline)
            except TimeoutError:  # the database and the disk both refuse them: a side file, or named as lost
                self._writing = late
                saved = self._rescue(timeout)
        if self.watchdog is not None:
            self.watchdog.stop()
        if saved:  # else the journal keeps the lost rows for the next start to store
            self.journal.close()
        if self.fallback.pending:
            log.error("database unavailable at shutdown: rows stay in %s and replay at the next start", self.fallback.spool.path)
        c = self.chain
        log.info("request-log chain %s ends at seq %d, hash %s", c.writer_id, c.seq, c.head)

    def _rescue(self, timeout: float) -> bool:
        """The writer thread is stuck (in an insert or a replay): spool what it holds and what
        is queued. The batch it is inserting may also commit; replay skips rows already stored.
        False when even the spool refused them."""
        with self._handoff:  # held by the writer thread only while it takes a batch (ms: STOP is queued)
            queued = drain(self.queue)
            self.chain.link(queued)  # the writer thread is outside the lock, so not linking
            rows = self._writing + queued
        try:
            where = self.fallback.spool.rescue(rows)
        except OSError:  # the disk refuses too: say which records are lost, the one thing left
            log.exception("request-log writer stuck and the spool unwritable: %d rows lost: %s", len(rows), [r["request_id"] for r in rows])
            return False
        log.error("request-log writer did not finish within %.1f s; %d rows spooled to %s, replayed at the next start", timeout, len(rows), where)
        return True

    def _run(self) -> None:
        stopping = False
        while not stopping and not self._abandoned:
            if time.monotonic() >= self._adopt_at:
                self._adopt()
            idle = max(0.0, self._adopt_at - time.monotonic())
            if self.fallback.pending:
                idle = min(idle, self.fallback.interval_s)
            with self._handoff:
                # The flush wait is cut short too when adoption is due: a long VIGIL_LOG_FLUSH_MS
                # would otherwise hold a dead process's rows back by as much.
                batch, stopping = collect(self.queue, self.batch_size, min(self.flush_s, idle), idle, self._full)
                self.chain.link(batch)
                self._writing = batch
            if batch:
                self._write(batch)
            self._writing = []
            if self.fallback.due(now=stopping):
                with self._database():
                    replayed = self.fallback.replay(self.engine)
                if replayed:
                    self._db_down = False

    def _adopt(self) -> None:
        """Store the rows that processes killed on this spool had queued and not stored (those
        neither in the spool nor in the database), linked into this writer's chain. Needs the
        database, to tell stored rows from lost ones: while it is away, tried again later. A
        journal that cannot be read is passed over, so it holds back no other."""
        retry = False
        try:
            for orphan in orphans(self.fallback.spool.path, self.journal.lock_path):
                with orphan:
                    try:
                        with self._database():
                            fresh = unstored(orphan.rows(), self.fallback.spool, self.engine)
                    except SQLAlchemyError as e:  # the database is away: every journal would fail alike
                        retry = True
                        log.warning("journals of killed processes not adopted yet (%s); next try in %.1fs", type(e).__name__, self.fallback.interval_s)
                        break
                    except Exception:  # this journal only: the others are still adopted
                        log.exception("journal %s could not be adopted; next try in %.0fs", orphan.lock_path, self.adopt_every_s)
                        continue
                    for i in range(0, len(fresh), self.batch_size):
                        self._link_and_write(fresh[i : i + self.batch_size])
                    orphan.remove()
                self.adopted += len(fresh)
                if fresh:
                    log.warning("stored %d request-log rows from %s, the journal of a process that was killed", len(fresh), orphan.segments)
        except Exception:  # nothing here may end the writer thread, which every row needs
            log.exception("looking for the journals of killed processes failed; next try in %.0fs", self.adopt_every_s)
        self._adopt_at = time.monotonic() + (self.fallback.interval_s if retry else self.adopt_every_s)

    def _link_and_write(self, batch: list[dict[str, Any]]) -> None:
        """Link and write a batch that is not on the queue, published in `_writing` (as a
        queued batch is) so that a shutdown rescue spools it if its insert hangs: its rows
        hold seq numbers, and a batch that never reaches storage would break the chain."""
        with self._handoff:
            self.chain.link(batch)
            self._writing = batch
        self._write(batch)
        self._writing = []

    def _write(self, batch: list[dict[str, Any]], deadline: float | None = None) -> None:
        if not self._db_down:
            try:
                self._insert(batch)
                return
            except Exception:  # any driver or server error: the rows go to the spool
                self.failures += 1
                self._db_down = True
                log.exception("request-log insert of %d rows failed; spooling until the database is back", len(batch))
        self._spool(batch, deadline)

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        with self._database(), self.engine.begin() as conn:
            conn.execute(insert(T), batch)
        self.written += len(batch)
        self._settled(batch)

    def _spool_now(self, rows: list[dict[str, Any]]) -> None:
        self.chain.link(rows)
        self._spool(rows)

    def _spool(self, rows: list[dict[str, Any]], deadline: float | None = None) -> None:
        """Into the spool, never dropped. While the disk refuses them (full), the database is
        tried between attempts: a writer that only retried the spool stayed wedged after the
        database came back, its queue full and every prediction refused. Past `deadline` (a
        shutdown's), TimeoutError: the caller rescues them otherwise."""
        delay = 0.1
        while True:
            try:
                self.fallback.store(rows)
                break
            except OSError:
                log.exception("cannot append %d rows to spool %s; trying the database, then the spool again in %.1fs", len(rows), self.fallback.spool.path, delay)
            try:
                self._insert(rows)
                # The database is back: later batches go to it first (the disk is still full),
                # and readiness no longer counts the refused append.
                self._db_down = self.fallback.refusing = False
                return
            except Exception:  # still away: wait, then both again
                self.failures += 1
                log.warning("request-log insert of %d rows failed too; retrying", len(rows), exc_info=True)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"{len(rows)} rows neither spooled nor stored by the shutdown's deadline")
            if self._abandoned:  # stop() rescued these rows (or named them lost) and returned
                return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._settled(rows)

    def _settled(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:  # in the database or the spool now, where the lookups find them
            self._inflight.pop(r["request_id"], None)
        self.journal.settle([r["request_id"] for r in rows])


def spool_path(settings: Settings) -> Path:
    """Where this service spools: VIGIL_LOG_SPOOL_PATH, else the database's default spool."""
    return settings.log_spool_path or default_spool_path(settings.database_url)


def build_writer(engine: Engine, settings: Settings) -> LogWriter:
    """The writer the service runs, configured from settings."""
    return LogWriter(
        engine,
        settings.log_queue_size,
        settings.log_batch_size,
        settings.log_flush_ms,
        spool=Spool(spool_path(settings)),
        overflow=settings.log_queue_full,
        writer_id=new_writer_id(settings.log_writer_id),
        replay_interval_s=settings.log_replay_interval_s,
        # SQLite's own busy timeout bounds its waits: no socket for a watchdog to break.
        stall_limit_s=None if engine.dialect.name == "sqlite" else STALL_FACTOR * settings.log_write_timeout_s,
    )
