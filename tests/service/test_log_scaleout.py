"""Two `vigil serve` processes logging to one PostgreSQL database at once: one chain each, no row lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.cli import main as vigil
from service.db.audit import verify
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from tests.images import noise_png
from tests.service.test_uvicorn_process import free_port, wait_ready

PER_SERVER, THREADS = 100, 2


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_share_one_database(tiny_bundle: Path, pg_url: str, tmp_path: Path) -> None:
    assert vigil(["db", "upgrade", "--url", pg_url]) == 0  # once, before either process starts
    procs, bases = [], []
    for k in range(2):
        port = free_port()
        env = {**os.environ, "VIGIL_DATABASE_URL": pg_url, "VIGIL_LOG_SPOOL_PATH": str(tmp_path / f"spool-{k}.jsonl"),
               "VIGIL_LOG_WRITER_ID": f"proc-{k}", "VIGIL_LOG_FLUSH_MS": "20"}  # fmt: skip
        cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(tiny_bundle), "--port", str(port)]
        # Output to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
        with open(tmp_path / f"server-{k}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        bases.append(f"http://127.0.0.1:{port}")
    ids: list[str] = []
    lock = threading.Lock()

    def client(base: str, seed: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            for i in range(PER_SERVER // THREADS):
                r = c.post("/v1/predict", content=noise_png(seed + i % 8), headers={"content-type": "image/png"})
                assert r.status_code == 200, r.text  # a failure here fails the test via pytest's thread hook
                with lock:
                    ids.append(r.json()["request_id"])

    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_ready(base, proc)
        threads = [threading.Thread(target=client, args=(b, 10 * t)) for b in bases for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        outs = [(tmp_path / f"server-{k}.log").read_text() for k in range(2)]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode in (0, -signal.SIGTERM), out[-2000:]
    assert len(ids) == 2 * PER_SERVER, outs[0][-2000:] + outs[1][-2000:]
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        stored = list(conn.scalars(select(RequestRecord.request_id)))
        per_writer = dict(conn.execute(select(RequestRecord.writer_id, func.count()).group_by(RequestRecord.writer_id)).all())
    result = verify(engine)
    engine.dispose()
    assert len(stored) == len(set(stored)) == len(ids) and set(stored) == set(ids)
    # One chain per process, each named by its VIGIL_LOG_WRITER_ID plus the run's suffix.
    assert sorted(per_writer.values()) == [PER_SERVER, PER_SERVER], per_writer
    assert sorted(w.rsplit("-", 1)[0] for w in per_writer) == ["proc-0", "proc-1"]
    assert result.ok and result.chains == 2
