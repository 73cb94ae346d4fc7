"""Types for client text and times that reach SQL or a response, checked while the request is parsed.

A bad value is then a 422 naming the parameter, before any query runs: PostgreSQL
refuses a NUL character in text (SQLite stores it), a lone surrogate (JSON's `"\\ud800"`)
cannot be encoded as UTF-8 for the database or for the response that echoes it, and a
time whose offset pushes it past year 1 or 9999 cannot be converted to UTC. Each would
otherwise surface as a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator

from service.db.queries import as_utc


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
        converted = as_utc(value)
    except OverflowError as e:
        raise ValueError("is out of range once converted to UTC") from e
    assert converted is not None  # as_utc maps only None to None
    return converted


#: Client text that is echoed in a response.
Text = Annotated[str, AfterValidator(unicode_only)]
#: Client text that is stored or looked up in the database.
DbText = Annotated[str, AfterValidator(unicode_only), AfterValidator(no_nul)]
#: An ISO 8601 time from a client, converted to UTC (naive means UTC).
UtcTime = Annotated[dt.datetime, AfterValidator(in_utc)]
