"""Real `vigil serve` processes for browser, client and topology tests (issue 7).

Output goes to a file, not a pipe: a chatty server must never block on a full pipe,
and the JSON log lines stay readable after the process ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.service.test_uvicorn_process import free_port, wait_ready


@dataclass
class LiveServer:
    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> str:
        """SIGTERM, wait for the graceful shutdown, and return what the server logged."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.log_path.read_text()


def start(
    db_url: str, log_path: Path, migrate: bool = True, env: dict[str, str] | None = None
) -> LiveServer:
    """Start a server on a free port with the shipped default model; returns before it is ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)] + (
        ["--migrate"] if migrate else []
    )
    full_env = {
        **os.environ,
        "VIGIL_DATABASE_URL": db_url,
        "VIGIL_LOG_FORMAT": "json",
        **(env or {}),
    }
    out = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return LiveServer(f"http://127.0.0.1:{port}", proc, log_path)


def ready(server: LiveServer, timeout: float = 90.0) -> LiveServer:
    try:
        wait_ready(server.base, server.proc, timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{server.stop()[-3000:]}") from e
    return server
