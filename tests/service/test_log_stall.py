"""A PostgreSQL server that stops answering while its host still acknowledges packets.

Its processes are stopped (SIGSTOP): the kernel keeps the connections open and acknowledges
what the writer sends, so neither the server's statement timeout nor libpq's TCP bounds ever
fire. Only the writer's watchdog can break the wait.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine

from service.db.audit import verify
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.spool import Spool
from service.db.watchdog import Watchdog
from service.db.writer import STALL_FACTOR, build_writer
from service.metrics import _StateCollector
from service.settings import Settings
from tests.service.logrows import record, stored_ids
from tests.service.own_postgres import own_postgres


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_server_that_stops_answering_sends_rows_to_the_spool_and_loses_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with own_postgres() as pg:
        upgrade(pg.url)
        settings = Settings(database_url=pg.url, log_write_timeout_s=0.25, log_flush_ms=20,
                            log_replay_interval_s=0.2, log_spool_path=tmp_path / "spool.jsonl")  # fmt: skip
        engine = make_engine(pg.url, statement_timeout_s=settings.log_write_timeout_s)  # as the service builds it
        w = build_writer(engine, settings)
        assert w.watchdog is not None and w.watchdog.limit_s == STALL_FACTOR * 0.25
        assert w.fallback.spool.progress == w.watchdog.spool_progress and w.fallback.spool.waiting == w.watchdog.paused
        w.start()
        before = [record(i) for i in range(10)]
        for r in before:
            w.submit(r)
        wait_for(lambda: w.written == 10, timeout=10)  # a pooled connection now waits for the next batch
        during = [record(i) for i in range(10, 50)]
        with caplog.at_level(logging.ERROR, logger="vigil.writer"), pg.frozen():
            for r in during:
                w.submit(r)
            # Without the watchdog the insert (its pre-ping, in fact) waits for ever and the
            # queue fills; with it, the call is broken and the rows reach the spool.
            wait_for(lambda: w.spooled == 40, timeout=20)
            assert w.depth() == 0 and not w.database_up and w.watchdog.stalls >= 1 and w.written == 10
        assert "made no progress" in caplog.text
        families = _StateCollector(lambda: SimpleNamespace(writer=w)).collect()  # the writer's series come first
        stalls = next(m for m in families if m.name == "vigil_log_database_stalls")
        assert stalls.samples[0].value == w.watchdog.stalls
        wait_for(lambda: not w.fallback.pending, timeout=30)  # the server answers again: the spool drains
        assert w.database_up
        w.stop()
        reader = make_engine(pg.url)
        ids = stored_ids(reader)
        assert sorted(ids) == sorted(r["request_id"] for r in before + during) and verify(reader).ok
        reader.dispose()
        engine.dispose()


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_the_watchdog_breaks_only_a_call_that_makes_no_progress() -> None:
    """On a socket pair: a section that makes progress, or none at all, is left alone."""
    import socket

    engine = create_engine("sqlite://")
    dog = Watchdog(engine, limit_s=1.0)
    ours, peer = socket.socketpair()

    class Conn:  # a driver connection: psycopg's has fileno()
        def fileno(self) -> int:
            return ours.fileno()

    conn = Conn()
    dog._watch(conn, None)  # type: ignore[arg-type]
    (_token, dup), = dog._socks.values()
    t0 = time.monotonic()
    assert dog.check(t0 + 5) == 0 and dog.stalls == 0  # no section: an idle pool is not a stall
    with dog.section():
        dog.progress()  # a statement started or finished
        assert dog.check(time.monotonic() + 0.5) == 0 and dog.stalls == 0
        assert dog.check(time.monotonic() + 1.5) == 1 and dog.stalls == 1
        assert dog._socks == {} and closed(dup)  # broken and forgotten: the pool replaces it
        # Still stalled a limit later (connecting, say): counted and said once, nothing to break.
        assert dog.check(time.monotonic() + 3.0) == 0 and dog.stalls == 2
        assert dog.check(time.monotonic() + 4.5) == 0 and dog.stalls == 2
        dog.spool_progress()  # this thread is in the section: its spool work is progress
        assert dog.check(time.monotonic() + 0.5) == 0
        dog.progress()
        assert dog.check(time.monotonic() + 1.5) == 0 and dog.stalls == 3  # moved on, then stalled again: said again
    # Shut both ways: a reader blocked on this socket wakes up with end-of-file.
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(ours.recv(10)))
    reader.start()
    reader.join(5)
    assert got == [b""]
    dog._unwatch(conn)  # the pool's close event after the break: nothing left to close
    # A closed connection, or one dropped without a pool event, gives its duplicate back at
    # the next look.
    for drop in ("close event", "garbage collected"):
        other = Conn()
        dog._watch(other, None)  # type: ignore[arg-type]
        (_token, dup), = dog._socks.values()
        if drop == "close event":
            dog._unwatch(other)  # type: ignore[arg-type]
        del other
        gc.collect()
        assert dog.check() == 0 and dog._socks == {} and closed(dup), drop
    # SQLite's connections have no socket: nothing to watch.
    with engine.connect():
        assert dog._socks == {}
    dog.stop()
    ours.close()
    peer.close()


def test_a_wait_on_the_spools_lock_is_not_a_stall(tmp_path: Path) -> None:
    """Another replica replaying a large spool holds its lock for as long as that takes; the
    writer waiting for it is not waiting on the database."""
    import fcntl

    dog = Watchdog(create_engine("sqlite://"), limit_s=0.2)
    spool = Spool(tmp_path / "spool.jsonl")
    spool.progress, spool.waiting = dog.spool_progress, dog.paused  # as the writer wires them
    holder = open(tmp_path / "spool.jsonl.lock", "a")  # noqa: SIM115 - released below
    fcntl.flock(holder, fcntl.LOCK_EX)  # the other replica
    stalls_seen: list[int] = []
    waiting = threading.Event()

    @contextmanager
    def seen_waiting() -> Iterator[None]:
        with dog.paused():
            waiting.set()
            yield

    spool.waiting = seen_waiting

    def writer_replays() -> None:
        with dog.section():
            spool.append([record(0)])  # waits on the lock
            stalls_seen.append(dog.check())  # just got it: the clock started again

    t = threading.Thread(target=writer_replays)
    t.start()
    assert waiting.wait(5)
    assert dog.check(time.monotonic() + 1.0) == 0 and dog.stalls == 0  # waiting, well past the limit
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    t.join(5)
    assert stalls_seen == [0] and dog.stalls == 0 and dog._busy == {}
    with dog.section():  # the writer's own time in a section still counts
        assert dog.check(time.monotonic() + 1.0) == 0 and dog.stalls == 1
    dog.stop()


def test_another_threads_spool_work_does_not_hide_the_writers_stall(tmp_path: Path) -> None:
    """With VIGIL_LOG_QUEUE_FULL=spool, request threads append to the spool a row at a time
    while the writer's call hangs: their appends are not the writer's progress."""
    dog = Watchdog(create_engine("sqlite://"), limit_s=0.2)
    spool = Spool(tmp_path / "spool.jsonl")
    spool.progress, spool.waiting = dog.spool_progress, dog.paused
    with dog.section():  # the writer, hung since now
        time.sleep(0.1)
        appender = threading.Thread(target=lambda: [spool.append([record(i)]) for i in range(20)])
        appender.start()
        appender.join(10)
        # 0.25 s and more since the writer's last progress, 0.15 s since the last append.
        assert dog.check(time.monotonic() + 0.15) == 0 and dog.stalls == 1  # stalled, nothing to break: counted
    dog.stop()

