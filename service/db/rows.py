"""Request-log rows as the writer handles them: plain dicts, JSON-safe for the spool,
inserted with a dialect-specific ``ON CONFLICT DO NOTHING`` when replaying."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from sqlalchemy import DateTime, Insert, LargeBinary, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from service.db.tables import RequestRecord

T = RequestRecord.__table__
#: Every column but the surrogate key: executemany needs the same keys in every row.
COLUMNS = tuple(c.name for c in T.columns if c.name != "id")
_DATETIMES = frozenset(c.name for c in T.columns if isinstance(c.type, DateTime))
_BYTES = frozenset(c.name for c in T.columns if isinstance(c.type, LargeBinary))


def to_json(row: dict[str, Any]) -> str:
    out = dict(row)
    for c in _DATETIMES:
        if isinstance(out.get(c), dt.datetime):
            out[c] = out[c].isoformat()
    for c in _BYTES:
        if out.get(c) is not None:
            out[c] = base64.b64encode(out[c]).decode()
    return json.dumps(out, separators=(",", ":"))


def from_json(line: str) -> dict[str, Any]:
    """A row from `to_json`'s line; ValueError for a line that is none (damaged, or not an object)."""
    row: dict[str, Any] = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a request-log row")  # noqa: TRY004 - callers treat every unreadable line alike
    for c in _DATETIMES:
        if isinstance(row.get(c), str):
            row[c] = dt.datetime.fromisoformat(row[c])
    for c in _BYTES:
        if isinstance(row.get(c), str):
            row[c] = base64.b64decode(row[c])
    return {c: row.get(c) for c in COLUMNS}


def insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping request ids already stored: replays stay exactly-once even when
    the original insert committed but its acknowledgement was lost."""
    stmt: Insert
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(T).on_conflict_do_nothing(index_elements=["request_id"])
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(T).on_conflict_do_nothing(index_elements=["request_id"])
    else:  # no portable upsert: fall back to filtering what is already there
        have = stored_request_ids(conn, [r["request_id"] for r in rows])
        rows = [r for r in rows if r["request_id"] not in have]
        stmt = insert(T)
    if rows:
        conn.execute(stmt, rows)


def stored_request_ids(conn: Connection, request_ids: list[str], chunk: int = 500) -> set[str]:
    """Those of `request_ids` that have a row, asked in chunks (bound parameters are limited)."""
    have: set[str] = set()
    for i in range(0, len(request_ids), chunk):
        have.update(conn.scalars(select(T.c.request_id).where(T.c.request_id.in_(request_ids[i : i + chunk]))))
    return have
