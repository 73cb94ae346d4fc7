"""Where request-log rows go while the database is away, and when to try it again.

Rows are appended to the spool (the writer retries them, never drops them, if even the disk
refuses, trying the database between attempts); while
the spool holds rows the writer asks `due()` every so often and then `replay()`s it.
Appends may come from request threads (overflow) while the writer replays, so the
"rows are waiting" flag changes only under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.db.engine import driver_reason
from service.db.spool import Spool

log = logging.getLogger("vigil.writer")
#: Seconds between repeats of the same replay failure in the log (one line a minute, not one a second).
REPEAT_S = 60.0


class Fallback:
    def __init__(self, spool: Spool, interval_s: float, chunk: int) -> None:
        self.spool = spool
        self.interval_s = interval_s
        self.chunk = chunk
        self.spooled = self.replayed = 0
        #: Failed replays, in all and in a row: the first of a run is logged, then one a minute.
        self.replay_failures = self._failing = 0
        self._said_at = 0.0
        self.pending = spool.has_rows()  # left over from an earlier run: replay first
        #: True from an append the disk refused (full) until one succeeds.
        self.refusing = False
        self._next = 0.0
        self._lock = threading.Lock()

    def store(self, rows: list[dict[str, Any]]) -> None:
        """Append `rows` once; OSError when the disk refuses (the writer retries them, trying
        the database in between: it may be back before the disk frees up)."""
        try:
            self.spool.append(rows)
        except OSError:
            self.refusing = True  # readiness: neither the database nor the spool takes rows
            raise
        self.refusing = False
        self.spooled += len(rows)
        with self._lock:
            if not self.pending:
                self.pending = True
                self._next = time.monotonic() + self.interval_s

    def due(self, now: bool = False) -> bool:
        return self.pending and (now or time.monotonic() >= self._next)

    def replay(self, engine: Engine) -> bool:
        """True when the spool went into the database; False (quietly) while it is still away."""
        try:
            n = self.spool.replay(engine, self.chunk)
        except (SQLAlchemyError, OSError) as e:  # the outage itself was logged once, loudly
            self.replay_failures += 1
            self._failing += 1
            now = time.monotonic()
            if self._failing == 1 or now - self._said_at >= REPEAT_S:
                self._said_at = now
                log.warning("spool replay failed %d time(s) in a row (%s: %s); retried every %.1fs", self._failing,
                            type(e).__name__, driver_reason(e), self.interval_s)  # fmt: skip
            self._next = now + self.interval_s
            return False
        except Exception:  # anything else must not end the writer thread, which every row needs
            log.exception("spool replay failed; next try in %.1fs", self.interval_s)
            self._next = time.monotonic() + self.interval_s
            return False
        self.replayed += n
        self._failing = 0
        with self._lock:  # rows appended after the replay read the file stay pending
            self.pending = self.spool.has_rows()
        return True
