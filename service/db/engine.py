"""Engine construction: the URL decides the backend (SQLite file by default, PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry


def make_engine(url: str, statement_timeout_s: float | None = None) -> Engine:
    """`statement_timeout_s`: how long one statement may wait (locks included) before it fails;
    the request-log writer's engine sets it, so a database that hangs sends rows to the spool."""
    if url.startswith("sqlite"):
        busy = 30.0 if statement_timeout_s is None else statement_timeout_s  # waiting on another writer's lock
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # WAL lets readers (reports, tests) run while the writer inserts.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # A bounded connect timeout: an unreachable server must send the log writer to its spool
    # within seconds, not after the operating system's TCP timeout.
    args: dict[str, object] = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    if statement_timeout_s is not None and url.startswith("postgresql"):
        ms = max(1, round(statement_timeout_s * 1000))
        args["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=args)
