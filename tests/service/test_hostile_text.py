"""Client text that PostgreSQL cannot store, and times that cannot be made UTC, on both backends.

A NUL character in a path, a query filter, a JSON field or an echoed OIP datatype used to
answer 500 on PostgreSQL, or to lose the refusal's log row (the insert failed and the row
went to the rejected spool). A time whose offset pushes it past year 1 answered 500 on
either backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.db.audit import verify
from service.db.engine import make_engine
from service.settings import Settings
from tests.images import noise_png
from tests.service.logrows import logged

ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdef"}
V2 = "/v2/models/tiny/infer"


def _app(bundle: Path, db_url: str, tmp_path: Path) -> TestClient:
    s = Settings(model_dir=bundle, database_url=db_url, migrate_on_start=True, log_flush_ms=5,
                 admin_api_keys=[ADMIN["Authorization"][7:]], log_spool_path=tmp_path / "spool.jsonl")  # fmt: skip
    return TestClient(create_app(s))


def test_refusals_quoting_a_nul_are_logged(tiny_bundle: Path, db_url: str, tmp_path: Path) -> None:
    with _app(tiny_bundle, db_url, tmp_path) as client:
        path = client.post("/v1/predict/a%00b", content=b"x", headers={"content-type": "image/png"})
        body = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP\x0032", "data": [0.0] * 784}]}
        dtype = client.post(V2, json=body)
        assert (path.status_code, dtype.status_code) == (404, 422), (path.text, dtype.text)
        assert dtype.json()["code"] == "unsupported_datatype" and "'FP\\x0032'" in dtype.json()["error"]
        rows = [logged(db_url, path.json()["error"]["request_id"]), logged(db_url, dtype.json()["request_id"])]
    assert rows[0].endpoint == "/v1/predict/a\ufffdb" and rows[0].http_status == 404
    assert rows[1].error_code == "unsupported_datatype" and "\x00" not in rows[1].error_message
    engine = make_engine(db_url)
    try:
        audit = verify(engine)  # the replacement happened before hashing: the chain holds
    finally:
        engine.dispose()
    assert audit.ok and audit.rows == 2, audit.breaks


@pytest.mark.parametrize(
    ("method", "url", "kw"),
    [
        ("POST", "/v1/requests/{rid}/feedback", {"json": {"label": 1, "note": "a\x00b"}}),
        ("POST", "/v1/requests/a%00b/feedback", {"json": {"label": 1}}),
        ("GET", "/v1/requests/a%00b", {"headers": ADMIN}),
        ("GET", "/v1/requests?model=a%00b", {"headers": ADMIN}),
        ("GET", "/v1/reports/summary?model=a%00b", {"headers": ADMIN}),
        ("GET", "/v1/requests?since=0001-01-01T00:00:00%2B14:00", {"headers": ADMIN}),
        ("GET", "/v1/requests?until=9999-12-31T23:59:59-14:00", {"headers": ADMIN}),
        ("GET", "/v1/reports/summary?since=0001-01-01T00:00:00%2B14:00", {"headers": ADMIN}),
    ],
    ids=["note", "feedback-id", "request-id", "model-filter", "summary-model", "since-overflow", "until-overflow", "summary-since"],
)
def test_unstorable_text_and_times_are_422(tiny_bundle: Path, db_url: str, tmp_path: Path, method: str, url: str, kw: dict[str, Any]) -> None:
    with _app(tiny_bundle, db_url, tmp_path) as client:
        rid = client.post("/v1/predict", content=noise_png(), headers={"content-type": "image/png"}).json()["request_id"]
        r = client.request(method, url.format(rid=rid), **kw)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and ("NUL" in err["message"] or "UTC" in err["message"]), err
        assert client.get("/v1/requests", headers=ADMIN).status_code == 200  # the service (and its pool) is fine
