"""The journal: each queued request-log row is also appended to a file of its process, so a
process killed outright (SIGKILL, the OOM killer) loses none of the rows it had queued.

The writer keeps rows in memory until their batch is inserted; `stop()` saves them at a
graceful shutdown, but nothing runs at SIGKILL. Rows are copied into a shared memory map of
the segment file: they are in the page cache at once, which outlives the process (not the
machine: an fsync per request would cost more than the request; the spool, fsync'ed, covers
the database being away). A map, not a write() per row: the system call released the GIL
on the request path, and the thread switches that followed cost the server ~10 % more CPU
per request in `benchmarks.log_writer`. The journal comes in segments of `SEGMENT_ROWS`
rows (or `SEGMENT_BYTES`); a segment is deleted once every row in it is settled (stored in
the database or the spool), so a healthy process keeps one or two small files.

A live process holds an exclusive flock on its journal's lock file; the kernel releases it
however the process dies. `orphans()` finds the journals whose lock can be taken: their
owners are gone, and the writer adopts their unsettled rows (service/db/writer.py).
"""

from __future__ import annotations

import fcntl
import glob
import logging
import mmap
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Self

from sqlalchemy import Engine

from service.db.rows import from_json, stored_request_ids
from service.db.spool import Spool

log = logging.getLogger("vigil.writer")

#: Rows per segment: small enough that adopting a dead process's settled tail is one quick
#: lookup, large enough that rotating (a file create and an unlink) is rare.
SEGMENT_ROWS = 1000
#: Bytes reserved per segment file (allocated up front: a full disk is then an error at
#: rotation, not a SIGBUS when a row is copied into the map). A row that is larger gets a
#: segment of its own size.
SEGMENT_BYTES = 1024 * 1024
#: Seconds between attempts while the journal cannot be written (a full disk): each attempt
#: costs a file creation on the request path, so not every row tries.
RETRY_S = 5.0
#: Age after which a `partial-` lock file (its process died between creating and naming it)
#: is removed: far beyond the microseconds a live process keeps one.
PARTIAL_STALE_S = 60.0
#: Lock files already reported as unreadable (reported once, not at every look).
_unreadable: set[Path] = set()


def _lock_path(spool: Path, journal_id: str) -> Path:
    return spool.with_name(f"{spool.name}.journal-{journal_id}.lock")


def _stem(lock: Path) -> Path:
    """A journal's name without the `.lock`: its segments are `<stem>.1`, `<stem>.2`, ..."""
    return lock.with_name(lock.name.removesuffix(".lock"))


def _segments(lock: Path) -> list[Path]:
    """A journal's segment files, oldest first."""
    stem = _stem(lock).name
    found = lock.parent.glob(glob.escape(stem) + ".*")
    return sorted((p for p in found if p.suffix[1:].isdigit()), key=lambda p: int(p.suffix[1:]))


def _try_lock(path: Path, mode: str = "r") -> IO[str] | None:
    """The file, opened and exclusively locked, or None while another process holds it."""
    f = open(path, mode)  # noqa: SIM115 - the lock lives as long as the returned file
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _create_locked(path: Path) -> IO[str]:
    """A new lock file, locked before it appears under its name: a scan for orphans never
    sees it unlocked (a flock follows the inode through the rename)."""
    partial = path.with_name("partial-" + path.name)
    owner = _try_lock(partial, "a")
    if owner is None:  # a fresh random name: nobody else can hold it
        raise OSError(f"journal lock {partial} is held by another process")
    os.replace(partial, path)
    return owner


class _Segment:
    """One segment file, written through a shared memory map: a row copied into it is in the
    page cache at once, with no system call. The unused tail stays zero bytes."""

    def __init__(self, path: Path, size: int) -> None:
        self._file = open(path, "w+b")  # noqa: SIM115 - closed by close()
        try:
            os.posix_fallocate(self._file.fileno(), 0, size)
            self._map = mmap.mmap(self._file.fileno(), size)
        except BaseException:
            self._file.close()
            path.unlink(missing_ok=True)
            raise
        self.size, self.used, self.rows = size, 0, 0

    def fits(self, n: int) -> bool:
        return self.used + n <= self.size

    def write(self, data: bytes) -> None:
        self._map[self.used : self.used + len(data)] = data
        self.used += len(data)
        self.rows += 1

    def close(self) -> None:
        self._map.close()
        self._file.close()


class Journal:
    """This process's journal; files are created on the first row, so a writer that never
    logs leaves nothing behind."""

    def __init__(self, spool: Path, segment_rows: int = SEGMENT_ROWS, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.lock_path = _lock_path(spool, f"{os.getpid()}-{secrets.token_hex(4)}")
        self.segment_rows, self.segment_bytes = segment_rows, segment_bytes
        self._lock = threading.Lock()
        self._owner: IO[str] | None = None
        self._file: _Segment | None = None
        self._segment = 0
        #: Unsettled rows per segment, and the segment of each unsettled row.
        self._pending: dict[int, int] = {}
        self._where: dict[str, int] = {}
        #: When writing last failed (None: it works), so a full disk is retried every RETRY_S.
        self._failed_at: float | None = None

    @property
    def writable(self) -> bool:
        """False while writing fails (a full disk): queued rows would then be lost to a kill."""
        return self._failed_at is None

    def _path(self, segment: int) -> Path:
        stem = _stem(self.lock_path)
        return stem.with_name(f"{stem.name}.{segment}")

    def add(self, request_id: str, line: str, enqueue: Callable[[], None]) -> None:
        """Run `enqueue` and, if it does not raise, journal the row: both under the journal's
        lock, so the writer cannot settle the row before it is counted, and a row the queue
        refused is never journaled (it was answered 503, not logged)."""
        with self._lock:
            enqueue()
            if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_S:
                return  # still failing, most likely: the row stays queued, only unjournaled
            try:
                self._append(request_id, line)
            except OSError as e:  # the row is still queued; only a kill could now lose it
                if self._failed_at is None:
                    log.error("request-log journal %s unwritable (%s): rows queued now are lost if the process is killed; retried every %.0f s", self.lock_path, e, RETRY_S)
                self._failed_at = time.monotonic()
                return
            if self._failed_at is not None:
                log.warning("request-log journal %s writable again", self.lock_path)
                self._failed_at = None

    def _append(self, request_id: str, line: str) -> None:
        if self._owner is None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._owner = _create_locked(self.lock_path)
        data = (line + "\n").encode()
        if self._file is None or self._file.rows >= self.segment_rows or not self._file.fits(len(data)):
            self._rotate(max(self.segment_bytes, len(data)))
        assert self._file is not None
        self._file.write(data)  # in the page cache now: what survives the process's death
        self._pending[self._segment] += 1
        self._where[request_id] = self._segment

    def _rotate(self, size: int) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._segment += 1
            self._drop_settled()
        self._file = _Segment(self._path(self._segment), size)
        self._pending[self._segment] = 0

    def _drop_settled(self) -> None:
        for segment, pending in list(self._pending.items()):
            if pending == 0 and segment != self._segment:
                self._path(segment).unlink(missing_ok=True)
                del self._pending[segment]

    def settle(self, request_ids: list[str]) -> None:
        """These rows are stored (database or spool): their segments may go."""
        with self._lock:
            for request_id in request_ids:
                segment = self._where.pop(request_id, None)
                if segment is not None:
                    self._pending[segment] -= 1
            self._drop_settled()

    def close(self) -> None:
        """Every row is stored: delete the journal and release its lock."""
        with self._lock:
            if self._file is not None:
                self._file.close()
            for segment in self._pending:
                self._path(segment).unlink(missing_ok=True)
            if self._owner is not None:
                self.lock_path.unlink(missing_ok=True)
                self._owner.close()
            self._file = self._owner = None
            self._pending.clear()
            self._where.clear()


class Orphan:
    """The journal of a process that is gone, locked by this one while it is adopted: use it in
    a `with` block, which releases the lock however the block ends."""

    def __init__(self, lock_path: Path, owner: IO[str]) -> None:
        self.lock_path = lock_path
        self._owner = owner

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner.close()  # closing twice is harmless

    @property
    def segments(self) -> str:
        """Its segment files as a pattern, for the log (`<stem>.*`)."""
        return f"{_stem(self.lock_path)}.*"

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row, oldest first. A line torn by the kill or damaged on disk is
        skipped: there is nothing whole to store. Rows are ASCII JSON, so a byte that is not
        ASCII is damage: such a row, linked into a chain and then refused by the database,
        would leave a gap in it."""
        rows = []
        for segment in _segments(self.lock_path):
            # The last piece, after the last newline, is the map's zero tail or a row torn by
            # the kill (its start copied, the rest still zeros): never a whole row.
            for raw in segment.read_bytes().split(b"\n")[:-1]:
                try:  # (a NUL, from a copy cut short, is ASCII: JSON refuses it itself)
                    rows.append(from_json(raw.decode("ascii")))
                except UnicodeDecodeError as e:
                    log.error("journal %s: unreadable row skipped (byte 0x%02x is not ASCII)", segment, raw[e.start])
                except ValueError as e:
                    log.error("journal %s: unreadable row skipped (%s)", segment, e)
        return rows

    def remove(self) -> None:
        """Its rows are stored: delete the journal, segments first, the lock file last (still
        locked: another process that opened it meanwhile finds it unlinked, and skips it)."""
        for segment in _segments(self.lock_path):
            segment.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)


def orphans(spool: Path, own: Path) -> Iterator[Orphan]:
    """The journals beside `spool` whose owners are gone (their lock can be taken), except
    `own`. Each is locked until the caller's `with` block on it ends."""
    pattern = glob.escape(spool.name) + ".journal-*.lock"
    for partial in spool.parent.glob("partial-" + pattern):
        _remove_stale_partial(partial)
    for lock in sorted(spool.parent.glob(pattern)):
        if lock == own:
            continue
        try:
            owner = _try_lock(lock)
        except FileNotFoundError:  # adopted and removed meanwhile by another process
            continue
        except OSError as e:  # e.g. another user's file: not ours to adopt, and not a reason to stop
            if lock not in _unreadable:
                _unreadable.add(lock)
                log.error("journal %s cannot be opened (%s): its rows are not adopted", lock, e)
            continue
        if owner is None:  # its process is alive
            continue
        try:  # adopted and removed between the open and the lock: the file locked is stale
            current = lock.stat().st_ino == os.fstat(owner.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            owner.close()
            continue
        yield Orphan(lock, owner)


def _remove_stale_partial(partial: Path) -> None:
    """A lock file whose process died between creating and naming it holds no rows."""
    try:
        if time.time() - partial.stat().st_mtime < PARTIAL_STALE_S:
            return
        owner = _try_lock(partial)
    except OSError:
        return
    if owner is not None:
        partial.unlink(missing_ok=True)
        owner.close()


def unstored(rows: list[dict[str, Any]], spool: Spool, engine: Engine) -> list[dict[str, Any]]:
    """The rows neither in the spool nor in the database. The connection comes first, so a
    database that is away fails this before the spool (largest then) is scanned, each try.
    The spool is asked before the database: a replay (another process's, every second) moves
    rows from it to the database, never back, so a row cannot slip between the two lookups."""
    ids = {r["request_id"] for r in rows}
    with engine.connect() as conn:
        known = spool.request_ids(among=ids)
        known |= stored_request_ids(conn, sorted(ids - known))
    return [r for r in rows if r["request_id"] not in known]
