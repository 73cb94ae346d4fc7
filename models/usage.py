"""The exception for a user's mistake in a command's options or inputs.

Raised deliberately by the checks that refuse bad options, paths and data before any
work; `vigil` prints it as one line (service/cli_errors.py). A plain `ValueError` from
deep inside a computation is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A refused option or input, with a message that says how to fix it."""
