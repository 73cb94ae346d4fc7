"""The compose topology without containers (issue 7): a one-shot migration, then two
production-mode service processes on their own ports sharing one PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from service.cli import main as vigil
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.routes.pages import STATIC_DIR
from tests.live import ready, start

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PRODUCTION = {"VIGIL_ENVIRONMENT": "production", "VIGIL_CLIENT_ID_SALT": "test-salt", "VIGIL_API_KEY_PEPPER": "test-pepper"}


def test_two_replicas_share_one_postgresql(pg_url: str, pg_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The compose file's `migrate` service, as the schema's owner: upgrade, then the replicas' role.
    monkeypatch.setenv("POSTGRES_APP_PASSWORD", "app-secret")
    assert vigil(["db", "upgrade", "--url", pg_url]) == 0
    assert vigil(["db", "grant", pg_role, "--url", pg_url, "--password-env", "POSTGRES_APP_PASSWORD"]) == 0
    app_url = make_url(pg_url).set(username=pg_role, password="app-secret").render_as_string(hide_password=False)
    servers = [start(app_url, tmp_path / f"api-{i}.log", migrate=False, env=PRODUCTION) for i in range(2)]
    ids: list[str] = []
    try:
        for s in servers:
            ready(s)
        png = (STATIC_DIR / "gallery" / "clear-7.png").read_bytes()
        for s in servers:
            r = httpx.post(f"{s.base}/v1/predict", content=png, headers={"content-type": "image/png"}, timeout=30)
            assert r.status_code == 200 and r.json()["decision"] == "accept"
            ids.append(r.json()["request_id"])
        x = np.zeros(784).tolist()
        v2 = httpx.post(
            f"{servers[1].base}/v2/models/mnist-default/infer",
            json={"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": x}]},
            timeout=30,
        )
        assert v2.status_code == 200
        ids.append(f"{v2.headers['x-request-id']}-0")
    finally:
        logs = [s.stop() for s in servers]
    assert all("Application shutdown complete" in log for log in logs), logs
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(select(RequestRecord.request_id, RequestRecord.writer_id, RequestRecord.endpoint)).all()
    engine.dispose()
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert len({r.writer_id for r in rows}) == 2  # each replica numbers its own rows
