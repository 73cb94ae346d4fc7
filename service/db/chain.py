"""Tamper evidence: every writer numbers its rows 1, 2, 3... and chains their hashes.

``row_hash = sha256(canonical(row))`` where the canonical form includes ``prev_hash`` (the
previous row's hash from the same writer), ``writer_id`` and ``seq``. Editing a row changes
its hash; deleting one leaves a gap in ``seq``; both are found by `vigil audit verify`.
Chains are per writer id (one per process run, never continued), so several processes can share one
database without coordinating. The hashed columns are a fixed list: a new column is not
covered until a new chain version says so (a test keeps that decision explicit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import socket
import threading
from typing import Any

GENESIS = "0" * 64

#: Columns covered by the hash (chain version 1). `id` is assigned by the database and
#: `row_hash` is the result, so neither is covered.
HASHED_COLUMNS = (
    "writer_id", "seq", "prev_hash", "request_id", "received_at", "client_request_id", "endpoint",
    "client_id", "model_name", "model_version", "input_sha256", "input_bytes", "input_width",
    "input_height", "input_mode", "input_pixels", "predicted_label", "class_name", "probabilities",
    "confidence", "predictive_entropy", "mutual_information", "failure_method", "failure_score",
    "failure_threshold", "failure_flagged", "ood_method", "ood_score", "ood_threshold", "ood_flagged",
    "prediction_set", "decision", "latency_ms", "http_status", "error_code", "error_message",
)  # fmt: skip
UNHASHED_COLUMNS = ("id", "row_hash")


def _canon(value: Any) -> Any:
    """One representation for a value whether it comes from Python, SQLite or PostgreSQL."""
    if isinstance(value, dt.datetime):
        # SQLite hands back naive UTC, PostgreSQL aware in the session's zone: normalise to UTC.
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    return value


#: Positions of the columns whose values need `_canon` (the rest are JSON as they are).
_SPECIAL = tuple(i for i, c in enumerate(HASHED_COLUMNS) if c in ("received_at", "input_pixels"))


def row_hash(row: dict[str, Any]) -> str:
    values = [row.get(c) for c in HASHED_COLUMNS]
    for i in _SPECIAL:
        values[i] = _canon(values[i])
    body = json.dumps(values, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(body.encode()).hexdigest()


#: Longest name a process may give its chains (VIGIL_LOG_WRITER_ID): the column holds 64
#: characters, 9 of which are the run's suffix.
NAME_MAX = 55


def new_writer_id(name: str | None = None) -> str:
    """Unique per process run: `name` (VIGIL_LOG_WRITER_ID) or host and pid, then a random
    suffix. A fixed name alone would restart its chain at seq 1 on every run: its rows then
    collide with the stored ones on (writer_id, seq), and were set aside, not stored."""
    base = name or f"{socket.gethostname()[:30]}-{os.getpid()}"
    return f"{base}-{secrets.token_hex(4)}"


class Chain:
    """Links rows in submission order; thread-safe because overflow rows are linked off the writer thread."""

    def __init__(self, writer_id: str) -> None:
        self.writer_id = writer_id
        self.seq = 0
        self.head = GENESIS
        self._lock = threading.Lock()

    def link(self, rows: list[dict[str, Any]]) -> None:
        """Set writer_id, seq, prev_hash and row_hash on each row, in place."""
        with self._lock:
            for row in rows:
                self.seq += 1
                row.update(writer_id=self.writer_id, seq=self.seq, prev_hash=self.head)
                self.head = row["row_hash"] = row_hash(row)
