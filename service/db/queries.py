"""Reading the request log back: filtered, cursor-paginated lists and single rows."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, and_, exists, false, func, or_, select
from sqlalchemy.engine import Connection

from service.db.tables import Feedback, RequestRecord

T = RequestRecord.__table__
F = Feedback.__table__
#: Everything but the stored input (kilobytes a row), plus whether there is one.
LISTED = [c for c in T.columns if c.name != "input_pixels"] + [T.c.input_pixels.is_not(None).label("has_input")]


def utc(value: dt.datetime) -> dt.datetime:
    """Compare like with like: stored times are UTC (SQLite keeps them as naive text; PostgreSQL
    hands them back in the session's time zone), and a naive filter value means UTC too."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """`utc`, passing None through."""
    return None if value is None else utc(value)


#: The summary's window when it is given no start: the day before its end.
DEFAULT_REPORT_WINDOW = dt.timedelta(hours=24)


class WindowError(ValueError):
    """A since/until pair that makes no window; `describe` names the two bounds as the caller calls them."""

    def __init__(self, template: str) -> None:
        super().__init__(template.format(since="since", until="until"))
        self.template = template

    def describe(self, since: str, until: str) -> str:
        return self.template.format(since=since, until=until)


def check_window(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """A list filter's bounds, each optional: refused only when both are given and empty between."""
    if since is not None and until is not None and since >= until:
        raise WindowError("{since} must be before {until}")


def report_window(since: dt.datetime | None, until: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """A summary's window: until defaults to now, since to `DEFAULT_REPORT_WINDOW` before it.

    Checked after the defaults, so a since in the future (with no until) is refused as an
    empty window too, not silently summarised as nothing.
    """
    end = until or dt.datetime.now(dt.UTC)
    try:
        start = since or end - DEFAULT_REPORT_WINDOW
    except OverflowError as e:  # until within a day of year 1
        raise WindowError("{until} is too early for the default window (the 24 h before it); give {since}") from e
    if start >= end:
        raise WindowError("{since} must be before {until}" + ("" if until else " (default: now)"))
    return start, end


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class RequestFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    model: str | None = None
    decision: str | None = None
    flagged: bool | None = None
    has_feedback: bool | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.since is not None:
            stmt = stmt.where(T.c.received_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(T.c.received_at < self.until)
        if self.model is not None:
            stmt = stmt.where(T.c.model_name == self.model)
        if self.decision is not None:
            stmt = stmt.where(T.c.decision == self.decision)
        if self.flagged is not None:
            # Flags belong to predictions: true, a flag is up; false, a prediction with neither.
            # A refusal has no scores and matches neither (false used to list it as unflagged).
            up = or_(func.coalesce(T.c.failure_flagged, false()), func.coalesce(T.c.ood_flagged, false()))
            stmt = stmt.where(up if self.flagged else and_(~up, T.c.decision.is_not(None)))
        if self.has_feedback is not None:
            current = exists().where(and_(F.c.request_id == T.c.request_id, F.c.replaced_at.is_(None)))
            stmt = stmt.where(current if self.has_feedback else ~current)
        return stmt


def encode_cursor(row_id: int, anchor: dt.datetime | None = None) -> str:
    """`row_id`, the last row handed out, and `anchor`, the moment the listing's first page
    measured its spans back from (`since=24h`), kept to the millisecond."""
    at = "" if anchor is None else f"@{round(anchor.timestamp() * 1000)}"
    return base64.urlsafe_b64encode(f"id:{row_id}{at}".encode()).decode().rstrip("=")


#: What `encode_cursor` writes: a positive row id, as the database's BIGINT holds it, and
#: optionally the anchor in Unix milliseconds, from late 1999 to 2286 (12 or 13 digits).
_CURSOR = re.compile(r"id:([1-9][0-9]{0,18})(?:@(9[4-9][0-9]{10}|[1-9][0-9]{12}))?")
_MAX_ID = 2**63 - 1
#: How far ahead of this replica's clock another replica's may be when it hands out a cursor.
CLOCK_SKEW = dt.timedelta(minutes=5)


def decode_cursor(cursor: str) -> tuple[int, dt.datetime | None]:
    """The row id and anchor of a cursor `encode_cursor` wrote (the anchor None in a cursor
    without one); BadCursor for anything else (int() alone took spaces, other scripts' digits
    and ids past BIGINT, which the query then failed on)."""
    try:
        m = _CURSOR.fullmatch(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise BadCursor(cursor) from e
    if m is None or int(m[1]) > _MAX_ID:
        raise BadCursor(cursor)
    anchor = None if m[2] is None else dt.datetime.fromtimestamp(int(m[2]) / 1000, dt.UTC)
    # A listing began in the past: a later anchor is forged (its spans would end the listing
    # silently), beyond what replicas' clocks may disagree by.
    if anchor is not None and anchor > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
        raise BadCursor(cursor)
    return int(m[1]), anchor


def list_requests(conn: Connection, f: RequestFilter, limit: int, after: int | None) -> tuple[list[Row[Any]], int | None]:
    """Newest first by insertion id, below row id `after` (a cursor's): stable under concurrent
    inserts (new rows sort before page 1). Also the id to continue after, if rows remain."""
    stmt = f.apply(select(*LISTED)).order_by(T.c.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(T.c.id < after)
    rows = list(conn.execute(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more else None


def get_request(conn: Connection, request_id: str) -> Row[Any] | None:
    return conn.execute(select(*LISTED).where(T.c.request_id == request_id)).first()


def feedback_for(conn: Connection, request_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """Every feedback entry for these requests, oldest first."""
    out: dict[str, list[Row[Any]]] = defaultdict(list)
    if request_ids:
        for fb in conn.execute(select(F).where(F.c.request_id.in_(list(request_ids))).order_by(F.c.id)):
            out[fb.request_id].append(fb)
    return out
