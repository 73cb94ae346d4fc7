"""Turning a user's mistake into one line on stderr, for every `vigil` command.

Bad paths, corrupt bundles, unreachable or unmigrated databases, bad settings and
out-of-range options used to end in a Python traceback. They are mistakes to fix, not
bugs to report, so `vigil` prints one sentence and exits with status 2. Anything else is
a bug and keeps its traceback; `VIGIL_DEBUG=1` shows the traceback for these too.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from models.bundle import BundleError, validation_summary

#: Wording of "the table is missing" by SQLite and PostgreSQL.
_NOT_MIGRATED = ("no such table", "does not exist")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def user_error(e: BaseException) -> str | None:
    """One line describing a user-caused failure, or None for a bug (keep the traceback)."""
    if isinstance(e, ValidationError):
        return f"invalid {e.title}: {validation_summary(e)}"
    if isinstance(e, ArgumentError):  # NoSuchModuleError too: an unknown dialect
        return f"bad database URL: {_first_line(e)}"
    if isinstance(e, OperationalError | ProgrammingError):
        reason = _first_line(e.orig if e.orig is not None else e)
        if any(words in reason for words in _NOT_MIGRATED):
            return f"the database is not migrated ({reason}): run `vigil db upgrade`"
        return f"database error: {reason}"
    if isinstance(e, ModuleNotFoundError):
        return f"a driver or module is not installed: {_first_line(e)}"
    if isinstance(e, KeyError):
        return _first_line(e.args[0] if e.args else e)
    if isinstance(e, BundleError | ValueError | OSError):
        return _first_line(e)
    return None
