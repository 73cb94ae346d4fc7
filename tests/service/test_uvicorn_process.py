"""A real `vigil serve` process on a free port: predict over HTTP, stop it, read the log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.db.engine import make_engine
from service.db.tables import RequestRecord
from tests.images import noise_png


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.mark.slow
def test_serve_process_logs_every_request(tiny_bundle: Path, db_url: str) -> None:
    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(tiny_bundle), "--port", str(port), "--migrate"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        ids = []
        for seed in range(5):
            r = httpx.post(f"{base}/v1/predict", content=noise_png(seed), headers={"content-type": "image/png"})
            assert r.status_code == 200
            ids.append(r.json()["request_id"])
        bad = httpx.post(f"{base}/v1/predict", content=b"nope", headers={"content-type": "image/png"})
        assert bad.status_code == 415
        ids.append(bad.json()["error"]["request_id"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), out.decode()[-2000:]
    assert "Application shutdown complete" in out.decode()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        logged = conn.execute(select(RequestRecord.request_id, RequestRecord.http_status)).all()
        assert conn.execute(select(func.count()).select_from(RequestRecord)).scalar_one() == len(ids)
    engine.dispose()
    assert sorted(r.request_id for r in logged) == sorted(ids)
    assert sorted(r.http_status for r in logged) == [200] * 5 + [415]
