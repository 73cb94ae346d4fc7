"""The background writer: batches, the hash chain, the spool and its exactly-once replay."""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, delete, select, update

from service.db.audit import verify
from service.db.batching import STOP
from service.db.chain import HASHED_COLUMNS, UNHASHED_COLUMNS
from service.db.engine import make_engine
from service.db.feedback import NoPrediction, UnknownRequest, add_feedback
from service.db.migrate import upgrade
from service.db.rows import from_json, insert_ignoring_duplicates, to_json
from service.db.spool import Spool
from service.db.tables import RequestRecord
from service.db.writer import LogWriter, QueueFull, build_writer
from service.settings import Settings
from tests.service.logrows import count, record, stored_ids, table_locked

T = RequestRecord.__table__


def writer(engine: Engine, spool: Spool, writer_id: str | None = None, replay_s: float = 0.05) -> LogWriter:
    return LogWriter(engine, 1000, 50, 20, spool=spool, writer_id=writer_id, replay_interval_s=replay_s)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_every_column_is_hashed_or_explicitly_not() -> None:
    assert sorted(HASHED_COLUMNS + UNHASHED_COLUMNS) == sorted(c.name for c in T.columns)


def test_rows_are_batched_chained_and_tampering_is_found(engine: Engine, tmp_path: Path) -> None:
    w = writer(engine, Spool(tmp_path / "spool.jsonl"), "w-a")
    w.start()
    recs = [record(i) for i in range(120)]
    for r in recs:
        w.submit(r)
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs)
    assert verify(engine).ok and verify(engine).rows == 120
    victim = recs[40]["request_id"]
    with engine.begin() as conn:  # behind the service's back
        conn.execute(update(T).where(T.c.request_id == victim).values(predicted_label=9, confidence=0.99))
    result = verify(engine)
    assert not result.ok and result.first is not None
    assert (result.first.request_id, result.first.seq) == (victim, 41)
    assert "altered" in result.first.reason
    with engine.begin() as conn:
        conn.execute(delete(T).where(T.c.request_id == recs[80]["request_id"]))
    reasons = {b.seq: b.reason for b in verify(engine).breaks}
    assert set(reasons) == {41, 82} and "missing" in reasons[82]


def test_unreachable_database_spools_then_replays_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)  # no schema yet: every insert fails like a database that is away
    spool = Spool(tmp_path / "spool.jsonl")
    w = writer(engine, spool, replay_s=60)  # only the replay at stop, so the race below is staged
    w.start()
    recs = [record(i) for i in range(30)]
    for r in recs:
        w.submit(r)
    wait_for(lambda: w.spooled == 30)
    assert spool.has_rows() and w.pending_status(recs[3]["request_id"]) == 200 and w.failures == 1
    upgrade(url)  # the database "comes back"
    # A replay racing a partial commit: some rows already made it in before the failure was seen.
    first_five = [from_json(line) for line in spool.path.read_text().splitlines()[:5]]
    with engine.begin() as conn:
        insert_ignoring_duplicates(conn, first_five)
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs)
    assert not spool.has_rows() and verify(engine).ok
    engine.dispose()


def test_full_queue_rejects_or_spools(engine: Engine, tmp_path: Path) -> None:
    rejecting = LogWriter(engine, 2, 50, 20, spool=Spool(tmp_path / "a.jsonl"))
    rejecting.submit(record())
    rejecting.submit(record())
    with pytest.raises(QueueFull):
        rejecting.submit(record())
    spooling = LogWriter(engine, 2, 50, 20, spool=Spool(tmp_path / "b.jsonl"), overflow="spool", replay_interval_s=0.05)
    recs = [record(i) for i in range(6)]
    for r in recs:  # the thread is not running yet: 2 queued, 4 spooled
        spooling.submit(r)
    assert spooling.spooled == 4
    spooling.start()
    spooling.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs)
    assert verify(engine).ok and count(engine) == 6


def test_a_row_the_database_refuses_is_set_aside_not_blocking(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    w = writer(engine, spool, "w-p")
    w.start()
    recs = [record(i) for i in range(20)]
    recs[7]["http_status"] = None  # NOT NULL: refused for its content, on every backend
    for r in recs:
        w.submit(r)
    wait_for(lambda: w.replayed == 19 and spool.rejected == 1)  # the row set aside is not counted as replayed
    later = record(99)
    w.submit(later)  # the writer is back on the database
    w.stop()
    good = {r["request_id"] for r in recs} - {recs[7]["request_id"]}
    assert set(stored_ids(engine)) == good | {later["request_id"]} and w.written >= 1
    (line,) = spool.rejected_path.read_text().splitlines()
    assert recs[7]["request_id"] in line and not spool.has_rows()
    (gap,) = verify(engine).breaks  # honest: the chain shows one row missing from the database
    assert gap.seq == 9 and "missing" in gap.reason


def spooled_ids(spool: Spool) -> set[str]:
    return {from_json(line)["request_id"] for line in spool.path.read_text(encoding="utf-8").splitlines()}


@contextmanager
def hung_at_shutdown(tmp_path: Path, spool: Spool) -> Iterator[tuple[Engine, set[str]]]:
    """SQLite locked by another connection: the writer's insert waits (busy timeout 30 s).
    Yields after stop(0.5) returned, with the ids of the batch in flight and the queue."""
    url = f"sqlite:///{tmp_path / 'hung.db'}"
    upgrade(url)
    engine = make_engine(url)
    w = writer(engine, spool, replay_s=60)
    blocker = sqlite3.connect(tmp_path / "hung.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        w.start()
        in_flight = [record(i) for i in range(30)]
        for r in in_flight:
            w.submit(r)
        wait_for(lambda: w.depth() == 0 and len(w._writing) == 30)  # taken, blocked in the insert
        queued = [record(i) for i in range(20)]
        for r in queued:
            w.submit(r)
        started = time.monotonic()
        w.stop(0.5)
        assert time.monotonic() - started < 5  # not the 30 s busy timeout
        yield engine, {r["request_id"] for r in in_flight + queued}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        end_thread(w)


def end_thread(w: LogWriter) -> None:
    """A rescue leaves the writer thread behind (the process would exit); a test ends it."""
    w.queue.put(STOP)
    w._full.set()
    w._thread.join(35)
    assert not w._thread.is_alive()


def test_a_database_that_hangs_at_shutdown_loses_no_row(tmp_path: Path) -> None:
    """stop() gives up after its timeout and spools the batch being inserted and the queue."""
    spool = Spool(tmp_path / "spool.jsonl")
    with hung_at_shutdown(tmp_path, spool) as (engine, everything):
        assert spooled_ids(spool) == everything  # before the insert could finish
    Spool(spool.path).replay(engine)  # the next start; the stuck insert may also have committed
    assert sorted(stored_ids(engine)) == sorted(everything)
    assert verify(engine).ok and verify(engine).rows == 50
    engine.dispose()


def test_a_rescue_the_disk_refuses_names_every_lost_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    with caplog.at_level(logging.ERROR, logger="vigil.writer"), hung_at_shutdown(tmp_path, Spool(tmp_path / "a-file" / "spool.jsonl")) as (_, lost):
        assert "50 rows lost" in caplog.text and all(i in caplog.text for i in lost)  # and stop() did not raise


def test_a_rescue_the_spool_lock_holds_up_goes_to_a_side_file_the_replay_folds_in(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([record(0)])
    recs = [record(i) for i in range(5)]
    with open(spool.path.with_name("spool.jsonl.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a replay stuck in a hung database holds it
        started = time.monotonic()
        side = spool.rescue(recs, wait_s=0.2)
        assert time.monotonic() - started < 2
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert side != spool.path and side.exists()
    assert spool.status_of(recs[4]["request_id"]) == recs[4]["http_status"]
    later = Spool(spool.path)  # the next start
    assert later.replay(engine) == 6
    assert not side.exists() and not later.has_rows()
    assert {r["request_id"] for r in recs} <= set(stored_ids(engine)) and count(engine) == 6


class StuckReplay(Spool):
    """A replay that holds the spool's lock and hangs, as in a database that stopped answering."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()

    def replay(self, engine: Engine, chunk: int = 500) -> int:
        with self._locked():
            self.entered.set()
            self.release.wait(30)
        return 0


def test_a_writer_stuck_in_its_replay_rescues_to_a_side_file(engine: Engine, tmp_path: Path) -> None:
    spool = StuckReplay(tmp_path / "spool.jsonl")
    spool.append([record(0)])  # left from an outage: the writer replays it first
    w = writer(engine, spool, replay_s=0.01)
    w.start()
    assert spool.entered.wait(10)
    queued = [record(i) for i in range(20)]
    for r in queued:
        w.submit(r)
    started = time.monotonic()
    w.stop(0.3)
    assert time.monotonic() - started < 5  # the lock was not waited for
    sides = list(tmp_path.glob("spool.jsonl.rescue-*"))
    assert len(sides) == 1
    assert {from_json(line)["request_id"] for line in sides[0].read_text().splitlines()} == {r["request_id"] for r in queued}
    spool.release.set()
    end_thread(w)
    assert Spool(spool.path).replay(engine) == 21 and count(engine) == 21 and not sides[0].exists()


def test_a_rescue_waits_for_a_batch_being_taken_off_the_queue(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread between taking a batch and publishing it (here: slow to link it)
    holds it in neither the queue nor `_writing`; the rescue must wait for it."""
    spool = Spool(tmp_path / "spool.jsonl")
    w = writer(engine, spool)
    link = w.chain.link

    def slow_link(rows: list[dict[str, object]]) -> None:
        if rows and threading.current_thread().name == "vigil-log-writer":
            time.sleep(1.0)
        link(rows)

    monkeypatch.setattr(w.chain, "link", slow_link)
    w.start()
    recs = [record(i) for i in range(25)]
    for r in recs:
        w.submit(r)
    wait_for(lambda: w.depth() == 0)  # taken; the writer thread sleeps in link
    w.stop(0.2)
    assert spooled_ids(spool) == {r["request_id"] for r in recs}
    end_thread(w)


def test_a_torn_rescue_file_costs_only_its_torn_row(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    first, second = [record(i) for i in range(2)], [record(i) for i in range(3)]
    torn = spool.path.with_name("spool.jsonl.rescue-1-1")
    torn.write_text(to_json(first[0]) + "\n" + to_json(first[1])[:40])  # cut off by a crash
    spool.path.with_name("spool.jsonl.rescue-1-2").write_text("".join(to_json(r) + "\n" for r in second))
    assert spool.replay(engine) == 4
    assert set(stored_ids(engine)) == {first[0]["request_id"]} | {r["request_id"] for r in second}
    assert len(spool.rejected_path.read_text().splitlines()) == 1


def test_feedback_on_a_row_not_yet_stored_follows_its_status(engine: Engine, tmp_path: Path) -> None:
    # The thread is not started: two rows stay queued and two go to the spool, one of each
    # refused. Feedback must be refused for the refused ones before they reach the database
    # (it was taken on trust while queued), accepted for the answered ones.
    w = LogWriter(engine, 2, 50, 20, spool=Spool(tmp_path / "s.jsonl"), overflow="spool")
    queued_ok, queued_refused = record(0), record(1, http_status=415, decision=None)
    spooled_ok, spooled_refused = record(2), record(3, http_status=429, decision=None)
    for r in (queued_ok, queued_refused, spooled_ok, spooled_refused):
        w.submit(r)
    assert w.spooled == 2
    assert [w.pending_status(r["request_id"]) for r in (queued_ok, queued_refused, spooled_ok, spooled_refused)] == [200, 415, 200, 429]
    assert w.pending_status("never-seen") is None
    for r in (queued_refused, spooled_refused):
        with pytest.raises(NoPrediction):
            add_feedback(engine, r["request_id"], 1, None, None, w.pending_status)
    for r in (queued_ok, spooled_ok):
        row, replaced = add_feedback(engine, r["request_id"], 1, None, None, w.pending_status)
        assert (row.request_id, row.true_label, replaced) == (r["request_id"], 1, False)
    with pytest.raises(UnknownRequest):
        add_feedback(engine, "never-seen", 1, None, None, w.pending_status)
    w.start()
    w.stop()
    assert w.pending_status(queued_refused["request_id"]) is None  # stored now: the database answers


def test_feedback_finds_a_row_stored_while_it_looks(engine: Engine) -> None:
    """The writer may store the row between the two lookups: asked about its queue just as
    the row leaves it (the stub stores it, then answers "not queued"), feedback must still
    find it in the database, not answer 404 for a prediction just made."""
    rec = record(0)

    def stored_meanwhile(request_id: str) -> int | None:
        with engine.begin() as conn:
            insert_ignoring_duplicates(conn, [rec])
        return None

    row, replaced = add_feedback(engine, rec["request_id"], 3, None, None, stored_meanwhile)
    assert (row.request_id, row.true_label, replaced) == (rec["request_id"], 3, False)


def test_the_spool_lookup_skips_rows_the_replay_would_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl")
    whole, torn = record(0, http_status=429, decision=None), record(1)
    spool.append([whole])
    with open(spool.path, "a", encoding="utf-8") as f:
        f.write(to_json(torn))  # a crash mid-append: no newline, so the replay drops this row
    assert spool.status_of(whole["request_id"]) == 429
    assert spool.status_of(torn["request_id"]) is None


def test_a_restart_under_a_fixed_writer_name_loses_no_row(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """Two runs with the same VIGIL_LOG_WRITER_ID: each starts a chain of its own. The second
    used to restart the name's chain at seq 1, collide with the stored rows on (writer_id,
    seq), and set its rows aside: lost to the log, and the chain broken."""
    settings = Settings(database_url=db_url, log_writer_id="web-1", log_spool_path=tmp_path / "s.jsonl", log_flush_ms=5)
    runs = [[record(i) for i in range(5)], [record(i) for i in range(5, 12)]]
    for rows in runs:
        w = build_writer(engine, settings)
        w.start()
        for r in rows:
            w.submit(r)
        w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for rows in runs for r in rows)
    audit = verify(engine)
    assert audit.ok and audit.rows == 12, audit.breaks
    with engine.connect() as conn:
        chains = set(conn.scalars(select(T.c.writer_id)))
    assert len(chains) == 2 and {c.rsplit("-", 1)[0] for c in chains} == {"web-1"}


@pytest.mark.postgres
def test_a_database_that_hangs_sends_rows_to_the_spool_not_the_queue(pg_url: str, tmp_path: Path) -> None:
    # PostgreSQL only: there an insert waits on a lock without end unless told otherwise
    # (SQLite's busy timeout always bounded it: 30 s before, VIGIL_LOG_WRITE_TIMEOUT_S now).
    upgrade(pg_url)
    engine = make_engine(pg_url, statement_timeout_s=0.3)  # as the service builds the writer's engine
    spool = Spool(tmp_path / "spool.jsonl")
    w = writer(engine, spool, replay_s=0.2)
    w.start()
    recs = [record(i) for i in range(40)]
    with table_locked(pg_url):
        for r in recs:
            w.submit(r)
        # The insert gives up after the timeout instead of waiting on the lock while the
        # queue fills: the rows are spooled, the queue is free for new requests.
        wait_for(lambda: w.spooled == 40, timeout=10)
        assert w.depth() == 0 and w.failures >= 1 and w.written == 0
    wait_for(lambda: w.replayed == 40, timeout=10)  # the lock is gone: the spool drains
    w.stop()
    reader = make_engine(pg_url)
    assert sorted(stored_ids(reader)) == sorted(r["request_id"] for r in recs) and verify(reader).ok
    reader.dispose()
    engine.dispose()


def test_a_locked_sqlite_file_sends_rows_to_the_spool_after_the_write_timeout(tmp_path: Path) -> None:
    """SQLite's busy timeout is the writer's VIGIL_LOG_WRITE_TIMEOUT_S (it was a fixed 30 s):
    another process's write lock holds an insert that long at most, then its rows spool."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    engine = make_engine(url, statement_timeout_s=0.3)  # as the service builds the writer's engine
    w = writer(engine, Spool(tmp_path / "spool.jsonl"), replay_s=0.2)
    w.start()
    recs = [record(i) for i in range(20)]
    holder = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a migration, or another writer's long transaction
    try:
        for r in recs:
            w.submit(r)
        wait_for(lambda: w.spooled == 20, timeout=5)  # well before 30 s
        assert w.failures >= 1 and w.written == 0 and w.depth() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: w.replayed == 20, timeout=10)
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs)
    engine.dispose()


def test_one_database_written_differently_shares_one_spool_and_others_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.db.spool import default_spool_path, stray_spools

    monkeypatch.chdir(tmp_path)
    one = default_spool_path("postgresql+psycopg://vigil:pw@DB:5432/vigil")
    # Same database: another port spelling, user, password or query; rows must not be stranded.
    assert {default_spool_path(u) for u in ("postgresql+psycopg://vigil@db/vigil", "postgresql://x:y@db:5432/vigil?sslmode=require")} == {one}
    other = default_spool_path("postgresql+psycopg://vigil@db/other")
    assert other != one and other.parent == one.parent == tmp_path
    assert stray_spools(one) == []
    other.write_text('{"request_id": "r1"}\n')
    (tmp_path / "vigil-spool-empty.jsonl").write_text("")  # nothing waits there
    assert stray_spools(one) == [other] and stray_spools(other) == []


@pytest.mark.postgres
def test_the_writers_timeouts_keep_the_urls_own_session_options(pg_url: str) -> None:
    from sqlalchemy import text

    engine = make_engine(pg_url + "?options=-csearch_path%3Dvigil_elsewhere", statement_timeout_s=2.5)
    for _ in range(2):  # a pooled connection keeps them after its reset
        with engine.connect() as conn:
            shown = [conn.execute(text(f"SHOW {name}")).scalar() for name in ("search_path", "statement_timeout", "lock_timeout")]
            conn.rollback()
        assert shown == ["vigil_elsewhere", "2500ms", "2500ms"]
    engine.dispose()


def test_spool_size_counts_rescued_rows_too(tmp_path: Path) -> None:
    # Rows set aside in a rescue file still wait for the database: the gauge must not say 0.
    spool = Spool(tmp_path / "spool.jsonl")
    assert spool.size() == 0
    (tmp_path / "spool.jsonl.rescue-1").write_text('{"request_id": "a"}\n')
    assert spool.size() == 20
    (tmp_path / "spool.jsonl").write_text('{"request_id": "b"}\n')
    assert spool.size() == 40


def test_a_database_that_stays_away_is_logged_once_a_minute_not_once_a_replay(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outage is logged loudly once by the failed insert; its replays, one a second, would
    otherwise add 3 600 lines an hour. The first failure of a run is logged, then one a minute,
    with the count so far; a success ends the run."""
    from service.db import fallback as fb

    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([record(0)])
    away = make_engine(f"sqlite:///{tmp_path / 'missing' / 'log.db'}")  # its folder does not exist: every connect fails
    f = fb.Fallback(spool, interval_s=0.0, chunk=50)
    clock = [1000.0]
    # A stand-in for the module's `time`, not the global one: other threads keep their clock.
    monkeypatch.setattr(fb, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=time.sleep))

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "spool replay failed" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="vigil.writer"):
        for _ in range(30):  # 30 tries within one second
            assert not f.replay(away)
            clock[0] += 1 / 30
        assert f.replay_failures == 30 and len(said()) == 1 and "1 time(s) in a row" in said()[0]
        clock[0] += fb.REPEAT_S  # a minute later: the next failure is said again, with the count
        assert not f.replay(away)
        assert len(said()) == 2 and "31 time(s) in a row" in said()[1]
        upgrade(f"sqlite:///{tmp_path / 'log.db'}")
        back = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
        assert f.replay(back) and not f.pending  # the run ends: the next failure is news again
        spool.append([record(1)])
        assert not f.replay(away)
        assert len(said()) == 3 and "1 time(s) in a row" in said()[2]
    away.dispose()
    back.dispose()



def _disk_full(self: Spool, rows: list[dict[str, object]]) -> None:
    raise OSError(28, "No space left on device")


def test_a_full_spool_disk_does_not_wedge_the_writer_once_the_database_is_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Database away and spool disk full: rows wait, retried on both; the database back, they
    are stored without the disk freeing up (the writer retried only the spool, its queue filled
    and every prediction was refused until someone freed disk space)."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)  # no schema yet: every insert fails like a database that is away
    spool = Spool(tmp_path / "spool.jsonl")
    monkeypatch.setattr(Spool, "append", _disk_full)
    w = writer(engine, spool)
    w.start()
    recs = [record(i) for i in range(20)]
    for r in recs:
        w.submit(r)
    wait_for(lambda: w.fallback.refusing and w.failures >= 2)  # neither takes rows: readiness says so
    upgrade(url)  # the database comes back; the disk stays full
    wait_for(lambda: len(stored_ids(engine)) == 20)
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs) and verify(engine).ok
    # Back to normal: later rows go to the database first, and nothing claims otherwise.
    assert w.database_up and not w.fallback.refusing
    w.stop()
    engine.dispose()


def stops_within(w: LogWriter, timeout: float, limit: float) -> None:
    """`w.stop(timeout)` returns within `limit` seconds: on its own thread, so that a stop()
    that never returns fails the test instead of hanging it."""
    stopper = threading.Thread(target=w.stop, args=(timeout,), daemon=True)
    stopper.start()
    stopper.join(limit)
    assert not stopper.is_alive(), f"stop({timeout}) still running after {limit} s"


def test_stop_with_a_full_queue_and_a_stuck_writer_ends_within_its_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() queued its end marker with a blocking put: on a full queue it waited past any grace period."""
    engine = make_engine(f"sqlite:///{tmp_path / 'away.db'}")  # never migrated: the database stays away
    monkeypatch.setattr(Spool, "append", _disk_full)
    w = LogWriter(engine, 3, 50, 20, spool=Spool(tmp_path / "spool.jsonl"), replay_interval_s=0.05)
    w.start()
    w.submit(record(0))
    wait_for(lambda: w.failures >= 2)  # the writer holds that row, retrying disk and database
    for i in range(1, 10):  # and the queue fills behind it
        try:
            w.submit(record(i))
        except QueueFull:
            break
    assert w.queue.full()
    queued = [r["request_id"] for r in list(w.queue.queue)]
    stops_within(w, 1.0, 3.0)
    # Not only quick: the queued rows were rescued (to the spool's side file: its append refuses).
    rescued = {from_json(line)["request_id"] for f in tmp_path.glob("spool.jsonl*") for line in f.read_text().splitlines(keepends=True)}
    assert set(queued) <= rescued, (queued, rescued)
    # The stuck thread, given up on, ends once it can: it used to retry and then replay into
    # this test's deleted database for the rest of the test session.
    w._thread.join(10)
    assert not w._thread.is_alive()
    engine.dispose()


def test_rows_queued_during_stop_are_rescued_when_database_and_disk_both_refuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows a request queued while stop() queued its end marker were written with no
    deadline: with the database away and the disk full, stop() never returned."""
    import service.db.writer as writer_mod

    engine = make_engine(f"sqlite:///{tmp_path / 'away.db'}")  # never migrated: the database stays away
    monkeypatch.setattr(Spool, "append", _disk_full)
    w = writer(engine, Spool(tmp_path / "spool.jsonl"))
    w.start()
    late = [record(7)]
    calls = iter([late])
    monkeypatch.setattr(writer_mod, "drain", lambda q: next(calls, []))  # one row slipped in behind STOP
    stops_within(w, 1.0, 3.0)
    rescued = {from_json(line)["request_id"] for f in tmp_path.glob("spool.jsonl*") for line in f.read_text().splitlines(keepends=True)}
    assert late[0]["request_id"] in rescued
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("break_it", "mend_it"),
    [
        # 42P01: a schema not migrated (or migrated elsewhere) has no table to insert into.
        ("ALTER TABLE request_log RENAME TO request_log_moved", "ALTER TABLE request_log_moved RENAME TO request_log"),
        # 42703: a schema behind the writer's lacks a column every row names.
        ("ALTER TABLE request_log RENAME COLUMN row_hash TO row_hash_moved", "ALTER TABLE request_log RENAME COLUMN row_hash_moved TO row_hash"),
    ],
    ids=["undefined_table", "undefined_column"],
)
def test_a_schema_the_writer_does_not_fit_keeps_every_row_in_the_spool(pg_url: str, tmp_path: Path, break_it: str, mend_it: str) -> None:
    """Every row would be refused alike, so the fault is the deployment's: the replay keeps the
    rows for the mended schema instead of bisecting them into `.rejected` one by one."""
    upgrade(pg_url)
    engine = make_engine(pg_url)
    spool = Spool(tmp_path / "spool.jsonl")
    recs = [record(i) for i in range(6)]
    spool.append(recs)
    with engine.begin() as conn:
        conn.exec_driver_sql(break_it)
    with pytest.raises(Exception) as refused:
        spool.replay(engine)
    assert getattr(refused.value.orig, "sqlstate", None) in {"42P01", "42703"}
    assert spool.has_rows() and spool.rejected == 0 and not spool.rejected_path.exists()
    with engine.begin() as conn:
        conn.exec_driver_sql(mend_it)
    assert spool.replay(engine) == 6 and not spool.has_rows()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in recs)
    engine.dispose()
