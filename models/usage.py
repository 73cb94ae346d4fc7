"""A user's mistake in a command's options or inputs: the exception, and bounded integer options.

`UsageError` is raised deliberately by the checks that refuse bad options, paths and data
before any work; `vigil` prints it as one line (service/cli_errors.py). A plain
`ValueError` from deep inside a computation is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path


class UsageError(ValueError):
    """A refused option or input, with a message that says how to fix it."""


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists: where the missing folders get created."""
    while not path.exists():
        path = path.parent
    return path


def prepare_output_file(path: Path, flag: str) -> None:
    """Before any work: refuse an output file that cannot be written, and create the folders
    it goes in (they were approved and then never made, so `--out new/x.json` failed with
    FileNotFoundError after the whole evaluation)."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory, not a file to write")
    ancestor = nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}: cannot write there ({ancestor} is a file, not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write there ({e.strerror or e})") from e
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: cannot write there (permission denied)")


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
