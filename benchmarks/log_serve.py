"""The servers the request-log benchmark compares: `python -m benchmarks.log_serve PORT on|off TIDFILE`.

Both arms run the very same app through uvicorn; "off" swaps the writer for a no-op
after start. "on" writes the writer thread's native id to TIDFILE, so the benchmark can
read that one thread's CPU time from /proc.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings


class NullWriter:
    """Takes records and does nothing: the 'logging off' arm of the comparison."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=10**9)
        self.written = self.failures = self.spooled = self.replayed = 0

    def submit(self, record: dict[str, Any]) -> None:
        pass

    def depth(self) -> int:
        return 0

    def pending_status(self, request_id: str) -> int | None:
        return None


def serve(port: int, log_on: bool, tid_file: Path) -> None:
    app = create_app(Settings(migrate_on_start=True))  # model and database from VIGIL_ variables
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            if log_on:
                tid_file.write_text(str(app.state.ctx.writer._thread.native_id))
            else:
                app.state.ctx.writer = NullWriter()  # the real writer still starts and stops, empty
            yield

    app.router.lifespan_context = lifespan
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2] == "on", Path(sys.argv[3]))
