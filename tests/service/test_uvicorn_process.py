"""A real `vigil serve` process on a free port: predict over HTTP, stop it, read the log."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.db.audit import verify
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from tests.images import noise_png


def free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999). A port the kernel handed out
    for bind(0) could go, once closed and before the server binds it, to another test worker's
    bind(0) or to any outgoing connection; one drawn at random below that range goes to neither."""
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken: draw again
                continue
            return port
    raise AssertionError("no free port in 20000-31999")


def until_closed(s: socket.socket) -> bytes:
    """Everything the server sends on `s` until it closes the connection."""
    got = b""
    while data := s.recv(65536):
        got += data
    return got


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
        # HTTP that uvicorn cannot parse: the API's error shape (service/http_protocol.py) and,
        # for a prediction request whose request line was read, its row; the others get none.
        def refused(request: bytes) -> tuple[bytes, dict[str, str]]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(request)
                answer = until_closed(s)
            head, _, body = answer.partition(b"\r\n\r\n")
            return head, json.loads(body)["error"]

        head, malformed = refused(b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head
        assert malformed["code"] == "malformed_request"
        ids.append(malformed["request_id"])
        head, too_large = refused(b"POST /v1/predict/ HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 70_000 + b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 ") and too_large["code"] == "request_head_too_large"
        ids.append(too_large["request_id"])
        assert refused(b"GET /v1/models HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n")[1]["code"] == "malformed_request"  # not a prediction
        head, after_version = refused(b"POST /v1/predict HTTP/1.1 extra\r\n\r\n")  # its method and target were read whole
        assert after_version["code"] == "malformed_request"
        ids.append(after_version["request_id"])
        assert refused(b"POST\x01/v1/predict HTTP/1.1\r\n\r\n")[1]["code"] == "malformed_request"  # no target to trust
        # Bad chunk framing in a body the app is already reading: the refusal carries that
        # request's id, the one its log row has (the app sees the connection end: 499).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            time.sleep(0.5)  # the app is waiting for the rest of the body
            s.sendall(b"zz\r\n")
            answer = until_closed(s)
        head, _, body = answer.partition(b"\r\n\r\n")
        framing = json.loads(body)["error"]
        assert head.startswith(b"HTTP/1.1 400 ") and framing["code"] == "malformed_request"
        ids.append(framing["request_id"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit.
    assert proc.returncode in (0, -signal.SIGTERM), out.decode()[-2000:]
    assert "Application shutdown complete" in out.decode()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        logged = conn.execute(select(RequestRecord.request_id, RequestRecord.http_status, RequestRecord.error_code)).all()
        assert conn.execute(select(func.count()).select_from(RequestRecord)).scalar_one() == len(ids)
    engine.dispose()
    assert sorted(r.request_id for r in logged) == sorted(ids)
    assert sorted(r.http_status for r in logged) == [200] * 5 + [400, 400, 415, 431, 499]
    codes = {r.request_id: r.error_code for r in logged}
    assert (codes[malformed["request_id"]], codes[too_large["request_id"]]) == ("malformed_request", "request_head_too_large")
    # Each HTTP-layer refusal is logged once, by Vigil's warning with its id, not uvicorn's too.
    assert "Invalid HTTP request received." not in out.decode()
    assert out.decode().count("refused by the HTTP layer") == 6


@pytest.mark.slow
def test_a_server_killed_outright_loses_no_logged_request(tiny_bundle: Path, tmp_path: Path) -> None:
    """SIGKILL runs no shutdown: the rows still queued in memory are stored by the next start,
    from the killed process's journal, each once, in chains that verify."""
    db_url = f"sqlite:///{tmp_path / 'log.db'}"
    # Rows wait in memory for up to 60 s: the kill is sure to find them there.
    env = {**os.environ, "VIGIL_DATABASE_URL": db_url, "VIGIL_LOG_FLUSH_MS": "60000", "VIGIL_LOG_BATCH_SIZE": "1000"}

    def serve() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(tiny_bundle), "--port", str(port), "--migrate"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{port}", proc)
        return proc, f"http://127.0.0.1:{port}"

    proc, base = serve()
    ids = []
    for seed in range(12):
        r = httpx.post(f"{base}/v1/predict", content=noise_png(seed), headers={"content-type": "image/png"})
        assert r.status_code == 200
        ids.append(r.json()["request_id"])
    ids.append(httpx.post(f"{base}/v1/predict", content=b"nope").json()["error"]["request_id"])
    proc.kill()
    proc.wait(10)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RequestRecord)).scalar_one() == 0
        proc, base = serve()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    stored = list(conn.scalars(select(RequestRecord.request_id)))
                if len(stored) >= len(ids):
                    break
                time.sleep(0.2)
            metrics = httpx.get(f"{base}/metrics").text
            assert f"vigil_log_records_adopted_total {float(len(ids))}" in metrics
            assert "vigil_log_journal_writable 1.0" in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert sorted(stored) == sorted(ids)
        assert verify(engine).ok
    finally:
        engine.dispose()


@pytest.mark.slow
def test_an_upload_still_stalled_at_the_shutdown_timeout_gets_a_503_and_its_row(tiny_bundle: Path, tmp_path: Path) -> None:
    """SIGTERM while an upload has sent part of its body: once VIGIL_SHUTDOWN_TIMEOUT_S is up,
    uvicorn cancels it. The client gets the error shape's 503 (uvicorn's own answer was a
    text/plain 500) and the request log the same refusal, under the same request id."""
    db_url = f"sqlite:///{tmp_path / 'log.db'}"
    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE_URL": db_url, "VIGIL_SHUTDOWN_TIMEOUT_S": "1", "VIGIL_BODY_IDLE_TIMEOUT_S": "60"}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(tiny_bundle), "--port", str(port), "--migrate"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n" + noise_png(0)[:100])
            time.sleep(0.5)  # the request is in the app, waiting for the rest of its body
            proc.send_signal(signal.SIGTERM)
            answer = until_closed(s)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), (answer, out.decode()[-2000:])
    error = json.loads(body)["error"]
    assert error["code"] == "shutting_down" and f"x-vigil-request-id: {error['request_id']}".encode() in head
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(RequestRecord.request_id, RequestRecord.http_status, RequestRecord.error_code)).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(error["request_id"], 503, "shutting_down")]
