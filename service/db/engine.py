"""Engine construction: the URL decides the backend (SQLite file by default, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

#: libpq connection bounds for PostgreSQL: connect within 5 s; a sent packet unacknowledged for
#: 10 s, or 3 keepalive probes 2 s apart after 5 s idle, break the connection.
PG_NETWORK_BOUNDS: dict[str, object] = {
    "connect_timeout": 5,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


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
    args: dict[str, object] = {}
    if url.startswith("postgresql"):
        given = make_url(url).query
        # A network that drops packets must break the connection within seconds (libpq aborts
        # when sent data stays unacknowledged, or probes stay unanswered), not after the
        # kernel's ~15 minutes of retransmissions; the URL's own values win.
        args = {k: v for k, v in PG_NETWORK_BOUNDS.items() if k not in given}
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=args)
    if statement_timeout_s is not None and url.startswith("postgresql"):
        ms = max(1, round(statement_timeout_s * 1000))

        @event.listens_for(engine, "connect")
        def _bounded(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # Session settings, on top of whatever the URL's `options` or PGOPTIONS set (a
            # `search_path` among them), committed at once so no pool reset undoes them.
            autocommit = dbapi_conn.autocommit  # type: ignore[attr-defined]
            dbapi_conn.autocommit = True  # type: ignore[attr-defined]
            cur = dbapi_conn.cursor()
            cur.execute(f"SET statement_timeout = {ms}")
            cur.execute(f"SET lock_timeout = {ms}")
            cur.close()
            dbapi_conn.autocommit = autocommit  # type: ignore[attr-defined]

    return engine


def driver_reason(e: BaseException) -> str:
    """The first line of what the driver said (SQLAlchemy wraps it in `orig`), for a log line or
    a one-line error: its later lines repeat the statement and its parameters."""
    lines = str(getattr(e, "orig", None) or e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names, when it does not exist (None for other backends): connecting
    would create it empty."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    path = Path(u.database)
    return None if path.exists() else path
