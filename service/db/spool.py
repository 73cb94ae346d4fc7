"""The spool: a local JSON-lines file that holds log rows while the database is away.

Appends are flushed and fsync'ed per batch, so a spooled row survives a crash of the
process. Replay inserts with ``ON CONFLICT DO NOTHING`` and empties the file only after
every row is committed: a replay cut short is simply done again, and no row is stored
twice. A row the database refuses for its content (not for being away) goes to
``<spool>.rejected`` with a loud error, so one bad row cannot hold back the rest. An exclusive ``flock`` on a side file serialises appends and replays across
threads and processes that share a spool path. At a shutdown that cannot wait for the lock
(see `rescue`), rows go to a side file that the next replay folds in.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from service.db.rows import from_json, insert_ignoring_duplicates, to_json

log = logging.getLogger("vigil.spool")

#: How long a shutdown rescue waits for the spool's lock before writing a side file.
RESCUE_WAIT_S = 2.0
#: Lines read between two `Spool.progress` calls while scanning (a fraction of a second).
PROGRESS_LINES = 10_000
#: A row's request id as `to_json` writes it (compact separators, so no space after the colon).
_REQUEST_ID = re.compile(r'"request_id":"([^"\\]*)"')


def _acquire(fd: int, wait_s: float | None) -> bool:
    """An exclusive flock; with `wait_s`, polled, and False once that long has passed."""
    if wait_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _size(path: Path) -> int:
    """0 for a missing file (a replay in another thread may unlink a rescue file meanwhile)."""
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _append(path: Path, lines: list[str]) -> None:
    """Append lines (each newline-terminated here), flushed and fsync'ed: they survive a crash."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


def _parse(line: str) -> dict[str, Any]:
    """One spooled row, or ValueError for a line that is none: torn by a crash mid-append
    (only such a line lacks its newline) or unreadable. Replay sets those aside, so the
    lookups must not count them either."""
    if not line.endswith("\n"):
        raise ValueError("torn last line")
    return from_json(line)


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    _append(path, [to_json(r) for r in rows])


SPOOL_PREFIX = "vigil-spool-"
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def default_spool_path(database_url: str) -> Path:
    """Next to a SQLite file; otherwise in the working directory, named after the database
    so that two services on one host logging to different databases never mix spools."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).with_name(Path(url.database).name + ".spool.jsonl")
    # Named after where the rows belong (backend, host, port, database), not the URL as written:
    # `@db/vigil`, `@db:5432/vigil` and `?sslmode=require` are one database and must share a spool.
    port = url.port or DEFAULT_PORTS.get(url.get_backend_name())
    where = f"{url.get_backend_name()}://{(url.host or '').lower()}:{port}/{url.database or ''}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:10]
    return Path(f"{SPOOL_PREFIX}{digest}.jsonl").resolve()


def stray_spools(path: Path) -> list[Path]:
    """Non-empty default-named spools beside `path` that are not `path`: rows another database
    URL (or an older naming) left there, which this process will not replay."""
    return sorted(p for p in path.parent.glob(f"{SPOOL_PREFIX}*.jsonl") if p != path and _size(p) > 0)


#: PostgreSQL's refusals of the writer itself (a missing grant, a schema not migrated, a column
#: it lacks): every row would be refused alike, so none is set aside as bad content.
DEPLOYMENT_FAULTS = frozenset({"42501", "42P01", "42703"})


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self.rejected_path = path.with_name(path.name + ".rejected")
        #: Rows this process set aside in `rejected_path` (for /metrics: each one is a row the
        #: database will not hold until someone looks).
        self.rejected = 0
        #: Called as the spool's own slow work moves on (every `PROGRESS_LINES` lines read, each
        #: chunk or side file), so that the writer's watchdog, which times the database, does
        #: not take a long scan for a hung server.
        self.progress: Callable[[], None] = lambda: None
        #: Around each wait for the lock (the watchdog's `paused`): another replica's replay may
        #: hold it for as long as that takes.
        self.waiting: Callable[[], AbstractContextManager[None]] = nullcontext

    @contextmanager
    def _locked(self, wait_s: float | None = None) -> Iterator[bool]:
        """Holds the lock; with `wait_s`, yields False instead once that long has passed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            with self.waiting():
                acquired = _acquire(lock.fileno(), wait_s)
            if not acquired:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def writable(self) -> bool:
        """Whether rows could be appended now: the spool opens for appending, and its folder takes
        new files (its lock, rescue and journal files live there). Tried, not asked with
        os.access, which answers yes to root whatever the mount allows."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".vigil-probe-"):
                pass
            if self.path.exists():
                with open(self.path, "ab"):
                    pass
        except OSError:
            return False
        return True

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._locked():
            _write_rows(self.path, rows)

    def rescue(self, rows: list[dict[str, Any]], wait_s: float = RESCUE_WAIT_S) -> Path:
        """Append at shutdown without waiting for ever on the lock's holder, which may be this
        process's own replay, stuck in a database that hangs: after `wait_s` the rows go to a
        side file `<spool>.rescue-<pid>-<ns>` that the next replay folds in. Returns the file."""
        with self._locked(wait_s) as held:
            if held:
                _write_rows(self.path, rows)
                return self.path
        side = self.path.with_name(f"{self.path.name}.rescue-{os.getpid()}-{time.time_ns()}")
        partial = side.with_name("partial-" + side.name)  # a replay never reads a half-written file
        _write_rows(partial, rows)
        os.replace(partial, side)
        return side

    def _rescued(self) -> list[Path]:
        return sorted(self.path.parent.glob(glob.escape(self.path.name) + ".rescue-*"))

    def _files(self) -> list[Path]:
        return [p for p in (self.path, *self._rescued()) if _size(p) > 0]

    def has_rows(self) -> bool:
        return bool(self._files())

    def size(self) -> int:
        """Bytes of rows waiting for the database: the spool and its rescue files."""
        return sum(_size(p) for p in (self.path, *self._rescued()))

    def _rows_naming(self, among: set[str]) -> Iterator[dict[str, Any]]:
        """The complete spooled rows (spool and side files) of the request ids in `among`, under
        the lock. A linear scan, but only lines naming one of them are parsed, so memory stays
        bounded however long the outage: asked only for ids not (yet) in the database."""
        if not among or not self.has_rows():
            return
        with self._locked():
            for path in self._files():
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        if n % PROGRESS_LINES == 0:
                            self.progress()
                        m = _REQUEST_ID.search(line)
                        if m is None or m.group(1) not in among:
                            continue
                        try:
                            yield _parse(line)
                        except ValueError:  # torn or damaged: replay sets it aside, so it is not spooled
                            continue

    def status_of(self, request_id: str) -> int | None:
        """The HTTP status of a spooled request's row, or None when it is not spooled."""
        with closing(self._rows_naming({request_id})) as rows:  # the lock goes with the generator
            for row in rows:
                status = row["http_status"]
                # No status: the database refuses the row (NOT NULL), so it is never stored.
                return status if isinstance(status, int) else None
        return None

    def request_ids(self, among: set[str]) -> set[str]:
        """Those of `among` with a complete row in the spool or its side files."""
        return {row["request_id"] for row in self._rows_naming(among)}

    def _adopt_rescued(self) -> None:
        """Fold side files into the spool (under the lock). A crash between the append and the
        unlink only repeats rows, which the replay's ON CONFLICT DO NOTHING absorbs."""
        for side in self._rescued():
            self.progress()
            # Line by line, each terminated: a tail torn by a crash cannot swallow the next row.
            _append(self.path, side.read_text(encoding="utf-8", errors="replace").splitlines())
            side.unlink()

    def _reject(self, lines: list[str], why: str) -> None:
        """Keep what the database will never take (or cannot be parsed) beside the spool, loudly."""
        _append(self.rejected_path, lines)
        self.rejected += len(lines)
        log.error("spool %s: %d row(s) moved to %s: %s", self.path, len(lines), self.rejected_path, why)

    def _chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The spooled rows in chunks, streamed: an outage's worth of rows need not fit in memory."""
        chunk: list[dict[str, Any]] = []
        with open(self.path, encoding="utf-8", errors="replace") as f:  # damage: set aside, below
            for line in f:
                try:
                    chunk.append(_parse(line))
                except ValueError as e:
                    self._reject([line], f"unreadable: {e}")
                    continue
                if len(chunk) >= size:
                    self.progress()
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _insert(self, engine: Engine, rows: list[dict[str, Any]]) -> int:
        """Insert rows; a row the database refuses (too long, bad value) must not block the
        rest for ever, so refused chunks are bisected and the bad rows set aside. Returns
        how many rows went into the database."""
        try:
            with engine.begin() as conn:
                insert_ignoring_duplicates(conn, rows)
        except (OperationalError, InterfaceError):
            raise  # the database is away: keep everything for the next replay
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) in DEPLOYMENT_FAULTS:
                raise  # the database refuses the writer, not the rows: keep them until it is mended
            if len(rows) == 1:
                self._reject([to_json(rows[0])], f"refused by the database: {e.orig!r}"[:500])
                return 0
            return self._insert(engine, rows[: len(rows) // 2]) + self._insert(engine, rows[len(rows) // 2 :])
        return len(rows)

    def replay(self, engine: Engine, chunk: int = 500) -> int:
        """Insert every spooled row (one transaction per chunk), then empty the spool.

        Raises if the database is away; the file is left whole and the next replay skips
        whatever this one already committed."""
        count = 0
        with self._locked():
            if not self.has_rows():
                return 0
            self._adopt_rescued()
            for rows in self._chunks(chunk):
                count += self._insert(engine, rows)  # not the rows set aside
            with open(self.path, "r+") as f:
                f.truncate(0)
                os.fsync(f.fileno())
        log.info("replayed %d spooled request-log rows from %s", count, self.path)  # a recovery, not a problem
        return count
