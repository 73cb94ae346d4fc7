"""Database work a request waits for (log reads, reports, the monitor, feedback), bounded.

It runs on threads of its own, at most `VIGIL_DB_CONCURRENCY` at once. On the shared thread
pool, which also decodes every image, a database that hangs would hold one thread per such
request until the pool was spent and predictions stalled behind them; here it holds these
threads only. A request that finds them all busy waits at most 5 s (or VIGIL_DB_TIMEOUT_S,
if shorter) and is answered 503 `database_busy`. A statement the database gives up on
(VIGIL_DB_TIMEOUT_S is the read engine's statement and lock timeout) or a database that
cannot be reached is answered 503 `database_unavailable`, not a 500: both are the database's
state, not the service's fault, and both say when to retry.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.db.engine import driver_reason
from service.errors import ApiError, error_body
from service.schemas import EXAMPLE_ERROR_ID, ErrorResponse

log = logging.getLogger("vigil.db")
R = TypeVar("R")
#: The longest a request waits for a free database thread.
MAX_WAIT_S = 5.0
RETRY = {"Retry-After": "5"}
BUSY = f"every database thread is busy (the database is slow or hung); retry in {RETRY['Retry-After']} s"
UNAVAILABLE = f"the request log's database did not answer; retry in {RETRY['Retry-After']} s"
#: The OpenAPI entry of the routes whose database work runs here.
DB_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "description": "The database is slow, hung or away: every database thread busy (`database_busy`) or the call failed (`database_unavailable`); retry after the Retry-After header.",
        # Declared with the routes, so that every route that spreads DB_ERRORS shows this example
        # rather than the generic 503 (inference backpressure), which these routes never answer.
        "content": {"application/json": {"example": error_body("database_unavailable", UNAVAILABLE, EXAMPLE_ERROR_ID)}},
    }
}


class DatabaseCalls:
    def __init__(self, concurrency: int, timeout_s: float) -> None:
        self.wait_s = min(MAX_WAIT_S, timeout_s)
        # The semaphore admits (with a deadline); the limiter, as large, is the threads'
        # own pool, so admitted work never queues behind the shared one.
        self._admit = anyio.Semaphore(concurrency)
        self._threads = anyio.CapacityLimiter(concurrency)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """`fn(*args)` on a database thread; the 503s above instead of waiting without end."""
        try:
            with anyio.fail_after(self.wait_s):
                await self._admit.acquire()
        except TimeoutError:
            raise ApiError(503, "database_busy", BUSY, RETRY) from None
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)
        except PoolTimeout as e:
            raise unavailable(e) from e
        except DBAPIError as e:
            if not database_state(e):
                raise  # a bug in the call: the 500, with its traceback in the log
            raise unavailable(e) from e
        finally:
            self._admit.release()


#: SQLite raises OperationalError for its missing tables and columns too; only these say the
#: database itself is busy or away.
SQLITE_STATES = ("locked", "busy", "unable to open", "disk i/o", "full", "readonly")
#: SQLite's primary result codes for a file that is no database (SQLITE_NOTADB) or a damaged
#: one (SQLITE_CORRUPT): the file's state, which an operator mends, not a bug in the statement.
#: By code, not by message: "malformed JSON" is a statement's error.
SQLITE_BROKEN_FILE = frozenset({26, 11})


def database_state(e: DBAPIError) -> bool:
    """Whether `e` is the database's state (away, busy, a statement it cancelled), not a bug."""
    if e.connection_invalidated:
        return True
    code = getattr(e.orig, "sqlite_errorcode", None)
    if isinstance(e.orig, sqlite3.DatabaseError) and code is not None and code & 0xFF in SQLITE_BROKEN_FILE:
        return True  # (the low byte: extended codes such as SQLITE_CORRUPT_INDEX carry the primary one)
    if not isinstance(e, OperationalError):
        return False
    if isinstance(e.orig, sqlite3.Error):
        return any(s in str(e.orig).lower() for s in SQLITE_STATES)
    return True  # PostgreSQL: connection failures, QueryCanceled, LockNotAvailable


def unavailable(e: Exception) -> ApiError:
    """The 503 for a database that failed the call; the reason goes to the service log only
    (it may name hosts and tables a client has no business seeing)."""
    log.warning("database call failed: %s: %s", type(e).__name__, driver_reason(e))
    return ApiError(503, "database_unavailable", UNAVAILABLE, RETRY)
