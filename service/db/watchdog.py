"""A client-side bound on the request-log writer's database calls.

`statement_timeout` and `lock_timeout` are the server's own: a PostgreSQL whose processes hang
(stopped, swapped out, stuck on a dead disk) while its host's kernel still acknowledges packets
never enforces them, and libpq's `tcp_user_timeout` and keepalives see a healthy connection.
The writer would wait in that call for ever, its queue would fill, and predictions would turn
into 503 `log_backpressure` while nothing is written. The watchdog keeps its own duplicate of
each connection's socket and, once the writer has spent `limit_s` inside a database section
with no statement starting or finishing, shuts those sockets down: the blocked call fails at
once, as on a dropped connection, so the batch goes to the spool and replay takes over. A
statement the server did receive may still commit when it wakes; replay's ON CONFLICT DO
NOTHING stores no row twice.

Only connections with a socket (`fileno()`: psycopg) are watched; SQLite's busy timeout
already bounds its waits.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger("vigil.writer")


class Watchdog:
    def __init__(self, engine: Engine, limit_s: float) -> None:
        self.limit_s = limit_s
        #: Stalls found so far (the metric vigil_log_database_stalls_total).
        self.stalls = 0
        #: id(dbapi connection) -> (token, our duplicate of its socket). The duplicate is ours:
        #: shutting it down reaches the connection's socket, and it cannot be closed and its
        #: number reused under us, as the driver's own descriptor could.
        self._socks: dict[int, tuple[int, int]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        #: Connections garbage-collected without a pool event, forgotten at the next look under
        #: the lock: a finalizer may run on any thread, even one holding the lock.
        self._dropped: collections.deque[tuple[int, int]] = collections.deque()
        #: Open sections per thread: a request thread spooling on overflow, which waits on
        #: the same lock, must not pause the writer thread's clock.
        self._busy: dict[int, int] = {}
        self._progress = time.monotonic()
        #: A stall with nothing to break was logged; said again only after progress.
        self._said_unbreakable = False
        self._stop = threading.Event()
        # First among the connect hooks: the dialect's setup and the session timeouts run
        # queries too, and a server that stops answering during them must find the socket watched.
        event.listen(engine.pool, "connect", self._watch, insert=True)
        for name in ("close", "close_detached"):
            event.listen(engine.pool, name, self._unwatch)
        # Statement boundaries and transaction ends are progress: a long replay of many
        # chunks is not a stall, one call that never returns is.
        for name in ("before_cursor_execute", "after_cursor_execute", "commit", "rollback"):
            event.listen(engine, name, self.progress)
        self._thread = threading.Thread(target=self._run, name="vigil-log-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._collect()
            for _token, fd in self._socks.values():
                os.close(fd)
            self._socks.clear()

    @contextmanager
    def section(self) -> Iterator[None]:
        """Around each piece of the writer's work that talks to the database."""
        me = threading.get_ident()
        with self._lock:
            self._busy[me] = self._busy.get(me, 0) + 1
            self._progress = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._busy[me] -= 1
                if not self._busy[me]:
                    del self._busy[me]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Around a wait that is not the database's (the spool's lock, held by another
        replica's replay for as long as that takes): this thread's sections do not count it."""
        me = threading.get_ident()
        with self._lock:
            depth = self._busy.pop(me, 0)
        try:
            yield
        finally:
            with self._lock:
                if depth:
                    self._busy[me] = depth
                    self._progress = time.monotonic()

    def check(self, now: float | None = None) -> int:
        """Break the watched connections if the writer is stalled; how many were broken."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._collect()
            if not self._busy or now - self._progress < self.limit_s:
                return 0
            self._progress = now  # once per limit_s while it stays stalled
            # Broken connections are forgotten at once: they are dead, and the pool replaces them.
            broken = 0
            for key, (token, fd) in list(self._socks.items()):
                broken += _shutdown(fd)
                self._forget(key, token)
        if broken:
            self.stalls += 1
            log.error("request-log database call made no progress for %.1f s: %d connection(s) broken; rows go to the spool until a replay succeeds", self.limit_s, broken)
        elif not self._said_unbreakable:  # still connecting (libpq's connect_timeout, if the URL has one, ends that): once until it moves on
            self.stalls += 1
            self._said_unbreakable = True
            log.error("request-log database call made no progress for %.1f s, and no connection is open to break (still connecting?)", self.limit_s)
        return broken

    def _run(self) -> None:
        interval = min(1.0, self.limit_s / 4)
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # the watchdog must outlive anything odd; the writer needs it
                log.exception("request-log watchdog check failed")

    def progress(self, *_args: Any, **_kw: Any) -> None:
        """The writer's database work moved on (a statement, a transaction's end): the stall
        clock starts again. Only the writer uses this engine, so any thread's event counts."""
        self._progress = time.monotonic()
        self._said_unbreakable = False

    def spool_progress(self) -> None:
        """The spool's own slow work moved on, counted only for a thread inside a section: a
        request thread spooling on a full queue, a row at a time, must not keep the writer's
        hung call alive by restarting its clock."""
        if threading.get_ident() in self._busy:
            self.progress()

    def _watch(self, dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        fileno = getattr(dbapi_conn, "fileno", None)
        if fileno is None or self._stop.is_set():  # stopped: nothing would close the duplicate
            return
        key, token = id(dbapi_conn), next(self._tokens)
        with self._lock:
            if self._stop.is_set():  # stopped meanwhile: stop() has closed every duplicate
                return
            self._collect()
            self._socks[key] = (token, os.dup(fileno()))
        # A connection dropped without a pool event still gives its duplicate back.
        weakref.finalize(dbapi_conn, self._dropped.append, (key, token))

    def _unwatch(self, dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry | None = None) -> None:
        # Deferred like a finalizer, not done under the lock here: the pool may close a
        # connection from the garbage collector, on a thread that holds the lock already.
        entry = self._socks.get(id(dbapi_conn))
        if entry is not None:
            self._dropped.append((id(dbapi_conn), entry[0]))

    def _collect(self) -> None:
        while self._dropped:
            self._forget(*self._dropped.popleft())

    def _forget(self, key: int, token: int) -> None:
        """Close our duplicate of connection `key`'s socket; the caller holds the lock."""
        entry = self._socks.get(key)
        if entry is None or entry[0] != token:  # closed already, or another connection has its id now
            return
        del self._socks[key]
        os.close(entry[1])


def _shutdown(fd: int) -> int:
    """Shut down the socket behind `fd` both ways (1), or 0 if it is already shut."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
        return 1
    except OSError:
        return 0
    finally:
        sock.close()  # closes the extra duplicate only; the socket lives on in `fd`
