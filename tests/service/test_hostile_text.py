"""Client text that PostgreSQL cannot store, and times that cannot be made UTC, on both backends.

A NUL character in a path, a query filter, a JSON field or an echoed OIP datatype used to
answer 500 on PostgreSQL, or to lose the refusal's log row (the insert failed and the row
went to the rejected spool). A time whose offset pushes it past year 1 answered 500 on
either backend.
"""

from __future__ import annotations

import json
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


def _post_json(client: TestClient, url: str, body: dict[str, Any]) -> Any:
    # json.dumps writes a lone surrogate as the escape `\ud800`, which is what a client sends.
    return client.post(url, content=json.dumps(body), headers={"content-type": "application/json"})


def _code(body: dict[str, Any]) -> str:
    return body["code"] if isinstance(body["error"], str) else body["error"]["code"]  # OIP's flat shape, or v1's


def test_lone_surrogates_are_422_and_logged_not_500(tiny_bundle: Path, db_url: str, tmp_path: Path) -> None:
    """JSON's `"\\ud800"` decodes to text no UTF-8 encoder takes (the database's, or the
    response's that echoes it): refused as the fields are parsed. The note and the v2 id were
    500s, the id's after the prediction had run and been logged as answered."""
    pixels = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
    with _app(tiny_bundle, db_url, tmp_path) as client:
        rid = client.post("/v1/predict", content=noise_png(), headers={"content-type": "image/png"}).json()["request_id"]
        note = _post_json(client, f"/v1/requests/{rid}/feedback", {"label": 1, "note": "a\ud800b"})
        v2_id = _post_json(client, V2, {"id": "\ud800", "inputs": [pixels]})
        v2_param = _post_json(client, V2, {"parameters": {"tag": "\ud800"}, "inputs": [pixels]})
        answers = [(r.status_code, _code(r.json())) for r in (note, v2_id, v2_param)]
        assert answers == [(422, "invalid_request")] * 3, answers
        assert "surrogate" in note.json()["error"]["message"] and "surrogate" in v2_id.json()["error"]
        rows = [logged(db_url, r.json()["request_id"]) for r in (v2_id, v2_param)]
    assert [(row.http_status, row.decision) for row in rows] == [(422, None), (422, None)]
    engine = make_engine(db_url)
    try:
        audit = verify(engine)
    finally:
        engine.dispose()
    assert audit.ok and audit.rows == 3, audit.breaks  # the prediction and the two v2 refusals, nothing else
