"""The journal: rows a process had queued when it was killed outright are stored by the next
writer on the same spool, once each, in a chain that still verifies."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from service.db import journal as journal_module
from service.db.audit import verify
from service.db.chain import Chain
from service.db.journal import SEGMENT_BYTES, Journal, orphans
from service.db.rows import to_json
from service.db.spool import Spool
from service.db.writer import LogWriter, QueueFull
from tests.service.logrows import record, stored_ids

REPO = Path(__file__).resolve().parents[2]

#: A process that stores some rows (in the database, or in the spool with `spooled`), then
#: queues more while its database hangs, says which, and waits to be killed.
CHILD = """
import json, sys, time
from pathlib import Path
from service.db.engine import make_engine
from service.db.spool import Spool
from service.db.writer import LogWriter
from tests.service.logrows import record

url, spool, stored, queued, mode = sys.argv[1:]
w = LogWriter(make_engine(url), 1000, 50, 10, spool=Spool(Path(spool)))
w._db_down = mode == "spooled"  # every batch goes to the spool, as while the database is away
w.start()
first = [record(i) for i in range(int(stored))]
for r in first:
    w.submit(r)
while w.written + w.spooled < len(first):
    time.sleep(0.01)
w._write = lambda batch: time.sleep(3600)  # the database hangs from here on
rest = [record(i) for i in range(int(queued))]
for r in rest:
    w.submit(r)
print(json.dumps([[r["request_id"] for r in first], [r["request_id"] for r in rest]]), flush=True)
time.sleep(3600)
"""


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def start_child(db_url: str, spool: Path, stored: int, queued: int, mode: str) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url, str(spool), str(stored), str(queued), mode],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    first, rest = json.loads(child.stdout.readline())
    return child, first, rest


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)


def journal_files(spool: Path) -> list[Path]:
    return sorted(spool.parent.glob(spool.name + ".journal-*"))


@pytest.mark.parametrize("mode", ["stored", "spooled"])
def test_rows_queued_by_a_killed_process_are_stored_once_by_the_next(engine: Engine, db_url: str, tmp_path: Path, mode: str) -> None:
    spool = tmp_path / "spool.jsonl"
    child, first, rest = start_child(db_url, spool, 30, 25, mode)
    kill(child)
    assert len(stored_ids(engine)) == (30 if mode == "stored" else 0)
    assert journal_files(spool), "the killed process left no journal"
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool), replay_interval_s=0.05)
    w.start()
    wait_for(lambda: len(stored_ids(engine)) == 55)
    w.stop()
    # The first rows were stored (or spooled) before the kill: only the queued ones are adopted.
    assert w.adopted == 25
    assert Counter(stored_ids(engine)) == Counter({i: 1 for i in first + rest})
    audit = verify(engine)
    assert audit.ok, audit.breaks[:3]
    assert audit.rows == 55
    assert journal_files(spool) == []


def test_a_live_process_keeps_its_journal_until_it_is_killed(engine: Engine, db_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool), replay_interval_s=0.05)
    w.adopt_every_s = 0.1
    w.start()
    child, first, rest = start_child(db_url, spool, 5, 7, "stored")
    try:
        time.sleep(0.5)  # several looks at the journals: the child's lock says it is alive
        assert w.adopted == 0 and len(stored_ids(engine)) == 5
    finally:
        kill(child)
    wait_for(lambda: w.adopted == 7)
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(first + rest)
    assert verify(engine).ok


def test_settled_segments_are_deleted_and_a_refused_row_is_never_journaled(tmp_path: Path) -> None:
    j = Journal(tmp_path / "spool.jsonl", segment_rows=3)
    q: queue.Queue[int] = queue.Queue(maxsize=6)
    for i in range(7):
        try:
            j.add(f"r{i}", json.dumps({"request_id": f"r{i}"}), lambda: q.put_nowait(0))
        except queue.Full:
            assert i == 6
    segments = sorted(p.name.rsplit(".", 1)[1] for p in tmp_path.glob("spool.jsonl.journal-*") if not p.name.endswith(".lock"))
    assert segments == ["0", "1"]  # r6 was refused by the full queue: no third segment
    data = (j.lock_path.with_name(j.lock_path.name.removesuffix(".lock") + ".1")).read_bytes()
    assert data.rstrip(b"\0").endswith(b"\n") and len(data) == SEGMENT_BYTES  # reserved up front, zero after the rows
    assert [json.loads(x)["request_id"] for x in data.split(b"\n")[:-1]] == ["r3", "r4", "r5"]
    j.settle(["r0", "r1"])
    assert len(list(tmp_path.glob("spool.jsonl.journal-*.0"))) == 1  # r2 still unsettled
    j.settle(["r2"])
    assert list(tmp_path.glob("spool.jsonl.journal-*.0")) == []
    j.settle(["r3", "r4", "r5"])  # the current segment stays until the next rotation or close
    assert len(list(tmp_path.glob("spool.jsonl.journal-*.1"))) == 1
    j.close()
    assert list(tmp_path.iterdir()) == []


def test_a_queue_full_refusal_leaves_nothing_to_adopt(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    dead = LogWriter(engine, 2, 50, 10, spool=Spool(spool))  # never started: rows stay queued
    kept = [record(i) for i in range(2)]
    for r in kept:
        dead.submit(r)
    with pytest.raises(QueueFull):
        dead.submit(record(9))  # answered 503: its row must not appear later
    dead.journal._owner.close()  # type: ignore[union-attr]  # what the kernel does when it dies
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool))
    w.start()
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in kept)
    assert journal_files(spool) == []


def test_a_row_torn_by_the_kill_costs_only_itself(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    dead = Journal(spool)
    rows = [record(i) for i in range(3)]
    for r in rows:
        dead.add(r["request_id"], to_json(r), lambda: None)
    segment = dead.lock_path.with_name(dead.lock_path.name.removesuffix(".lock") + ".0")
    with open(segment, "a") as f:
        f.write(to_json(record(3))[:40])  # the kill came mid-write
    dead._owner.close()  # type: ignore[union-attr]  # what the kernel does when it dies
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool))
    w.start()
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in rows)
    assert verify(engine).ok and journal_files(spool) == []


def dead_journal(spool: Path, rows: list[dict], **sizes: int) -> Path:
    """The journal a killed process leaves: its rows written, its lock released by the kernel."""
    j = Journal(spool, **sizes)
    for r in rows:
        j.add(r["request_id"], to_json(r), lambda: None)
    j._owner.close()  # type: ignore[union-attr]
    return j.lock_path.with_name(j.lock_path.name.removesuffix(".lock") + ".0")


#: A process whose adoption's first insert hangs: it queues 3 rows of its own, is stopped
#: (the shutdown rescue spools what it holds) and exits.
STUCK_ADOPTER = """
import json, os, sys, threading, time
from pathlib import Path
from service.db.engine import make_engine
from service.db.spool import Spool
from service.db.writer import LogWriter
from tests.service.logrows import record

url, spool = sys.argv[1:]
w = LogWriter(make_engine(url), 1000, 5, 10, spool=Spool(Path(spool)))
stuck = threading.Event()
def hang(batch):
    stuck.set()
    time.sleep(3600)
w._write = hang
w.start()
assert stuck.wait(20)
late = [record(i) for i in range(3)]
for r in late:
    w.submit(r)
w.stop(timeout=0.5)
print(json.dumps([r["request_id"] for r in late]), flush=True)
os._exit(0)  # the hung insert dies with the process, its transaction never committed
"""


def test_an_adopted_batch_whose_insert_hangs_at_shutdown_is_rescued_with_its_chain(engine: Engine, db_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    orphaned = [record(i) for i in range(12)]
    dead_journal(spool, orphaned)
    out = subprocess.run([sys.executable, "-c", STUCK_ADOPTER, db_url, str(spool)], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    late = json.loads(out.stdout)
    assert stored_ids(engine) == []
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool), replay_interval_s=0.05)
    w.start()
    wait_for(lambda: len(stored_ids(engine)) == 15)
    w.stop()
    assert Counter(stored_ids(engine)) == Counter({i: 1 for i in [r["request_id"] for r in orphaned] + late})
    audit = verify(engine)
    assert audit.ok, audit.breaks[:3]  # the stuck adopter's chain: its first batch, then its own 3 rows


def test_a_replay_between_the_lookups_does_not_make_spooled_rows_look_lost(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    rows = [record(i) for i in range(6)]
    dead_journal(spool.path, rows)
    Chain("killed-while-the-database-was-away").link(rows)
    spool.append(rows)  # the killed process had spooled them: they are not lost
    lookup = journal_module.stored_request_ids

    def then_replay(conn: Any, ids: list[str]) -> set[str]:
        found = lookup(conn, ids)
        spool.replay(engine)  # another replica's replay, right after the database was asked
        return found

    monkeypatch.setattr(journal_module, "stored_request_ids", then_replay)
    w = LogWriter(engine, 1000, 50, 10, spool=spool)
    w.start()
    w.stop()
    assert w.adopted == 0
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in rows)
    assert verify(engine).ok


def test_a_damaged_journal_holds_back_no_other(engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool.jsonl"
    good = [record(i) for i in range(4)]
    damaged = dead_journal(spool, good[:1])
    with open(damaged, "ab") as f:
        f.write(b'{"request_id":"\xff\xfe"}\n')  # a byte no row has: rows are ASCII JSON
    dead_journal(spool, good[1:])
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool))
    with caplog.at_level(logging.ERROR, logger="vigil.writer"):
        w.start()
        w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in good)
    assert verify(engine).ok and journal_files(spool) == []
    # The damaged row, and nothing else: not each segment's reserved zero tail.
    assert [r.message for r in caplog.records if "unreadable row" in r.message] == [f"journal {damaged}: unreadable row skipped (byte 0xff is not ASCII)"]


def test_a_damaged_spool_line_is_set_aside_and_the_writer_lives_on(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    before = [record(i) for i in range(2)]
    Chain("earlier-run").link(before)
    spool.append(before[:1])
    with open(spool.path, "ab") as f:
        f.write(b"\xff\xfe damaged on disk\n")
    spool.append(before[1:])
    w = LogWriter(engine, 1000, 50, 10, spool=spool, replay_interval_s=0.05)
    w.start()
    after = record(7)
    w.submit(after)
    wait_for(lambda: len(stored_ids(engine)) == 3)
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in [*before, after])
    assert "damaged on disk" in spool.rejected_path.read_text(encoding="utf-8", errors="replace")


def test_a_lock_file_left_unnamed_by_a_kill_is_removed_once_stale(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    stale, fresh = (tmp_path / f"partial-spool.jsonl.journal-{n}.lock" for n in ("1-aa", "2-bb"))
    stale.touch()
    fresh.touch()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert list(orphans(spool, tmp_path / "own.lock")) == []
    assert not stale.exists()
    assert fresh.exists()  # a live process may be about to lock and name it


def test_a_row_larger_than_a_segment_gets_a_segment_of_its_own(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    rows = [record(i, error_message="x" * 200) for i in range(3)]
    dead_journal(spool, rows, segment_bytes=600)  # a row is ~700 bytes here
    assert len(list(tmp_path.glob("spool.jsonl.journal-*.[0-9]"))) == 3
    w = LogWriter(engine, 1000, 50, 10, spool=Spool(spool))
    w.start()
    w.stop()
    assert sorted(stored_ids(engine)) == sorted(r["request_id"] for r in rows)


def test_a_long_flush_wait_does_not_hold_adoption_back(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    w = LogWriter(engine, 1000, 50, 60_000, spool=Spool(spool))  # a batch may wait a minute
    w.adopt_every_s = 0.2
    w.start()
    w.submit(record(0))  # the writer now waits for more rows, up to the flush interval
    orphaned = [record(i) for i in range(3)]
    dead_journal(spool, orphaned)
    wait_for(lambda: w.adopted == 3, timeout=5)
    w.stop()
    assert len(stored_ids(engine)) == 4


def test_a_full_disk_is_retried_and_leaves_no_empty_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "RETRY_S", 0.2)
    full = [True]
    real = os.posix_fallocate

    def fallocate(fd: int, offset: int, size: int) -> None:
        if full[0]:
            raise OSError(28, "No space left on device")
        real(fd, offset, size)

    monkeypatch.setattr(journal_module.os, "posix_fallocate", fallocate)
    j = Journal(tmp_path / "spool.jsonl")
    assert j.writable
    j.add("r0", json.dumps({"request_id": "r0"}), lambda: None)  # fails: not journaled
    assert list(tmp_path.glob("spool.jsonl.journal-*.[0-9]")) == []  # no empty segment left behind
    assert not j.writable  # what vigil_log_journal_writable reports
    full[0] = False
    j.add("r1", json.dumps({"request_id": "r1"}), lambda: None)  # within the retry wait: not tried
    time.sleep(0.25)
    j.add("r2", json.dumps({"request_id": "r2"}), lambda: None)  # tried again, and the disk has room
    assert j.writable
    (segment,) = tmp_path.glob("spool.jsonl.journal-*.[0-9]")
    assert [json.loads(x)["request_id"] for x in segment.read_bytes().split(b"\n")[:-1]] == ["r2"]
    j.close()
