"""Turning a user's mistake into one line on stderr, for every `vigil` command.

Bad paths, corrupt bundles, unreachable or unmigrated databases, bad settings and
out-of-range options used to end in a Python traceback. They are mistakes to fix, not
bugs to report, so `vigil` prints one sentence and exits with status 2. Only exceptions
that mean such a mistake are shortened: the option checks' `UsageError`, `BundleError`,
a missing or unwritable path, a settings or database error. A plain `ValueError` or
`KeyError` from inside a computation is a bug and keeps its traceback; `VIGIL_DEBUG=1`
shows the traceback for the shortened ones too.
"""

from __future__ import annotations

from typing import Any

from alembic.util import CommandError
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from models.bundle import BundleError, validation_summary
from models.usage import UsageError

#: Path problems a user fixes (a bare OSError may be a bug: it keeps its traceback).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def _not_migrated(reason: str) -> bool:
    # SQLite: "no such table: x"; PostgreSQL: 'relation "x" does not exist' (but a missing
    # database or role, 'database "x" does not exist', is a connection problem).
    return "no such table" in reason or ("relation" in reason and "does not exist" in reason)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


#: Settings classes read from `VIGIL_*` variables: their errors name the variable, not the field.
_ENV_SETTINGS = ("Settings", "TrainingSettings")


def _as_variable(err: Any) -> str:
    """A settings error as the operator wrote it: `VIGIL_PORT: ...`, not `port: ...`; a
    check across settings (loc empty) is its own message, without pydantic's prefix."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return msg
    name = f"VIGIL_{str(err['loc'][0]).upper()}"
    if name == "VIGIL_PORT" and str(err.get("input", "")).startswith("tcp://"):
        msg += " (Kubernetes sets VIGIL_PORT=tcp://... for a Service named vigil: set VIGIL_PORT=8000 or enableServiceLinks: false)"
    return f"{name}: {msg}"


def user_error(e: BaseException) -> str | None:
    """One line describing a user-caused failure, or None for a bug (keep the traceback)."""
    if isinstance(e, ValidationError) and e.title in _ENV_SETTINGS:
        return f"invalid settings: {validation_summary(e, describe=_as_variable)}"
    if isinstance(e, ValidationError):
        return f"invalid {e.title}: {validation_summary(e)}"
    if isinstance(e, SettingsError):  # e.g. a list setting that is not JSON: VIGIL_API_KEYS=key
        return f"{_first_line(e)}: list settings take JSON, e.g. '[\"key\"]'"
    if isinstance(e, ArgumentError):  # NoSuchModuleError too: an unknown dialect
        return f"bad database URL: {_first_line(e)}"
    if isinstance(e, OperationalError | ProgrammingError):
        reason = _first_line(e.orig if e.orig is not None else e)
        if _not_migrated(reason):
            return f"the database is not migrated ({reason}): run `vigil db upgrade`"
        return f"database error: {reason}"
    if type(e) is DatabaseError:  # not a subclass (a constraint is a bug): "file is not a database"
        return f"database error: {_first_line(e.orig if e.orig is not None else e)}"
    if isinstance(e, CommandError):
        return f"migration: {_first_line(e)}"  # an unknown or out-of-range revision
    if isinstance(e, ModuleNotFoundError):
        return f"a driver or module is not installed: {_first_line(e)}"
    if isinstance(e, (UsageError, BundleError, *_PATH_ERRORS)):
        return _first_line(e)
    return None
