"""Structured logs (issue 7): one JSON object per line, set up by `vigil serve`.

Fields passed as `extra=` (request_id, route, status, ...) become top-level keys, so a
log shipper can index them without parsing messages.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from typing import Literal

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _STANDARD and not k.startswith("_")
            }
        )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Plain text for a terminal, with line breaks in a message escaped: a path a client sent
    (`/x%0a2026-... INFO vigil.auth: ...`) must not start a forged line. Tracebacks, appended
    after the message, keep their lines."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers (and pytest's caplog) keep the message as it was.
        return super().format(copy.copy(record))

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


def configure_logging(fmt: Literal["json", "text"], level: str = "INFO") -> None:
    """Replace the root handlers: JSON lines for machines, or plain text for a terminal."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
