"""A user's mistake in a command's options or inputs: the exception, and bounded integer options.

`UsageError` is raised deliberately by the checks that refuse bad options, paths and data
before any work; `vigil` prints it as one line (service/cli_errors.py). A plain
`ValueError` from deep inside a computation is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


class UsageError(ValueError):
    """A refused option or input, with a message that says how to fix it."""


def int_in(low: int, high: int | None, name: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound for None), else argparse's
    own refusal naming the range. Unbounded, `--train-size -5` sliced from the end and trained
    on 49,995 images, and uvicorn took port 99999 as 99999 mod 65536."""
    span = f"{low}-{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not a {name} ({span})")
        return value

    parse.__name__ = name  # argparse names the type in "invalid <name> value: 'abc'"
    return parse
