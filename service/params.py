"""Types for client text and times that reach SQL or a response, checked while the request is parsed.

A bad value is then a 422 naming the parameter, before any query runs: PostgreSQL
refuses a NUL character in text (SQLite stores it), a lone surrogate (JSON's `"\\ud800"`)
cannot be encoded as UTF-8 for the database or for the response that echoes it, and a
time whose offset pushes it past year 1 or 9999 cannot be converted to UTC. Each would
otherwise surface as a 500.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from service.db.queries import utc
from service.errors import quoted


def unicode_only(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("must be valid Unicode text (no lone surrogate such as \\ud800)") from e
    return value


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def in_utc(value: dt.datetime) -> dt.datetime:
    try:
        return utc(value)
    except OverflowError as e:
        raise ValueError("is out of range once converted to UTC") from e


#: Client text that is echoed in a response.
Text = Annotated[str, AfterValidator(unicode_only)]
#: Client text that is stored or looked up in the database.
DbText = Annotated[str, AfterValidator(unicode_only), AfterValidator(no_nul)]


def db_text(max_length: int, min_length: int = 0) -> Any:
    """`DbText` of at most `max_length` characters. Checked by a validator of its own: a
    `max_length` beside `DbText` (on a union with None) ran as a generic check whose message
    counted "items", and a string constraint makes pydantic refuse a lone surrogate before
    `unicode_only` can say what is wrong with it. The schema still shows the limit."""

    def at_most(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters, got {len(value)}")
        if len(value) < min_length:  # `?model=` filtered on the empty name: an empty list, no error
            raise ValueError("must not be empty" if min_length == 1 else f"must be at least {min_length} characters")
        return value

    return Annotated[DbText, AfterValidator(at_most), Field(json_schema_extra={"maxLength": max_length})]
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


#: A span back from now, as the CLI's `--since` takes it: 90m, 24h, 7d.
_SPAN = re.compile(r"\s*(\d{1,9})([mhd])\s*")
#: A span in form with more digits than `_SPAN` takes (the bound keeps int() and timedelta cheap).
_LONG_SPAN = re.compile(r"\s*\d{10,}[mhd]\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_DATETIME = TypeAdapter(dt.datetime)
#: A time whose offset's '+' arrived as a space: 12:00:00 05:00, 12:00 0530.
_LOST_PLUS = re.compile(r"\d \d{2}(:?\d{2})?$")


def span_back(text: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """The time `text` (90m, 24h, 7d) before `now` (default: this moment), in UTC; None when
    `text` is no such span. OverflowError for a span reaching past year 1."""
    m = _SPAN.fullmatch(text)
    if m is None:
        return None
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(**{_UNITS[m[2]]: int(m[1])})


def pinned(raw: str | None, parsed: dt.datetime | None, anchor: dt.datetime) -> dt.datetime | None:
    """A `UtcTime` parameter again, with a span measured back from `anchor` instead of from the
    moment it was parsed: a listing's later pages keep its first page's window. `raw` is the
    parameter as sent; `parsed` what `UtcTime` made of it. OverflowError as `span_back`."""
    back = None if raw is None else span_back(raw, anchor)
    return parsed if back is None else back


def refuse_number(value: object) -> None:
    """ValueError for a bare number given as a time: the API's pydantic would read it as Unix
    time and the CLI's `fromisoformat` as a compact date (20261130), so each side would filter
    a different window; both refuse it with this one message instead."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError(f"must be an ISO 8601 time such as 2026-11-30T12:00:00Z or a span back from now such as 24h, not a number: {quoted(value)}")


def span_or_time(value: object) -> object:
    """A span back from now becomes its time; a bare number is refused, since pydantic would
    read it as Unix time: `since=20261130` (a compact date) filtered from 1970-08-23, and
    `until=0` ended the window in 1970. Anything else goes to pydantic's ISO 8601 parser,
    whose refusal ("input is too short" for `1w`) is replaced by one naming both forms."""
    if isinstance(value, str):
        try:
            if (back := span_back(value)) is not None:
                return back
        except OverflowError as e:
            raise ValueError(f"reaches back before year 1: {value[:20]!r}") from e
    refuse_number(value)
    if isinstance(value, str) and _LONG_SPAN.fullmatch(value):  # a span in form, refused for its size alone
        raise ValueError(f"a span back from now takes at most 9 digits (such as 90m, 24h or 7d); not {value.strip()[:40]!r}")
    if isinstance(value, str):
        try:
            return _DATETIME.validate_python(value)
        except ValidationError:
            # A query string's '+' arrives as a space: 12:00:00+05:00 unencoded reads 12:00:00 05:00.
            plus = " (a '+' in a query string must be sent as %2B)" if _LOST_PLUS.search(value.strip()) else ""
            raise ValueError(f"must be an ISO 8601 time such as 2026-11-30T12:00:00Z or a span back from now: a whole number of m, h or d such as 90m, 24h or 7d; not {value[:40]!r}{plus}") from None
    return value


#: A time from a client, converted to UTC: ISO 8601 (naive means UTC) or a span back from now.
#: Its schema says both, so that a generated client does not refuse or reformat `24h`.
UtcTime = Annotated[
    dt.datetime,
    BeforeValidator(span_or_time),
    AfterValidator(in_utc),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": _SPAN.pattern.replace("\\s*", "").join("^$")}]}),
]


#: A model name to filter the log by, and a feedback note.
ModelName = db_text(100, min_length=1)
Note = db_text(2000)
