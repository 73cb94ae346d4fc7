"""Feedback, the admin listing and the summary over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.docs_errors import BY_OPERATION
from service.settings import Settings
from tests.images import digit_png, noise_png
from training.data import load_mnist

ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdef"}


def wait_logged(client: TestClient, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (r := client.get(f"/v1/requests/{request_id}", headers=ADMIN)).status_code == 404:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.02)
    assert r.status_code == 200, r.text
    return r.json()


def test_feedback_listing_and_summary(tiny_bundle: Path, db_url: str, data_dir: Path, tmp_path: Path) -> None:
    test = load_mnist(data_dir, train=False)
    settings = Settings(model_dir=tiny_bundle, database_url=db_url, migrate_on_start=True, log_flush_ms=5,
                        admin_api_keys=[ADMIN["Authorization"][7:]], log_store_inputs=True,
                        log_spool_path=tmp_path / "spool.jsonl")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        answers = [client.post("/v1/predict", content=digit_png(test.x[i]), headers={"content-type": "image/png"}).json() for i in range(60)]
        answers += [client.post("/v1/predict", content=noise_png(s), headers={"content-type": "image/png"}).json() for s in range(3)]
        bad = client.post("/v1/predict", content=b"nope", headers={"content-type": "image/png"})
        ids = [a["request_id"] for a in answers]

        # Feedback right after predicting: the row may still be queued, and that is fine.
        first = client.post(f"/v1/requests/{ids[0]}/feedback", json={"label": 3, "note": "first guess"})
        assert first.status_code == 201, first.text
        assert first.json()["replaced"] is False
        for i in range(40):  # true labels for 40 digits
            r = client.post(f"/v1/requests/{ids[i]}/feedback", json={"label": int(test.y[i])})
            assert r.status_code == 201 and r.json()["replaced"] is (i == 0)
        assert client.post("/v1/requests/nope/feedback", json={"label": 1}).json()["error"]["code"] == "unknown_request"
        for label in (10, -1):  # one code on either side of the class range
            r = client.post(f"/v1/requests/{ids[1]}/feedback", json={"label": label})
            assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_label"), r.text
            if label == 10:  # /docs shows this very answer
                assert r.json()["error"]["message"] == BY_OPERATION[("post", "/v1/requests/{request_id}/feedback", 422)][1]

        detail = wait_logged(client, ids[0])
        assert [f["label"] for f in detail["feedback_history"]] == [3, int(test.y[0])]
        assert detail["feedback_history"][0]["replaced_at"] is not None and detail["feedback"]["label"] == int(test.y[0])
        assert detail["feedback_history"][0]["labelled_by"].startswith("ip:")  # who labelled it, never a raw address
        assert detail["has_input"] and detail["row_hash"] and detail["seq"] >= 1
        assert detail["received_at"].endswith(("Z", "+00:00"))
        wait_logged(client, bad.json()["error"]["request_id"])
        refused = client.post(f"/v1/requests/{bad.json()['error']['request_id']}/feedback", json={"label": 1})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "no_prediction"), refused.text

        assert client.get("/v1/requests").status_code == 401
        pages, cursor = [], None
        while True:  # pagination: 64 rows in pages of 25, each row exactly once, newest first
            q: dict[str, Any] = {"limit": 25} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/requests", params=q, headers=ADMIN).json()
            pages.append(page["items"])
            if not (cursor := page["next_cursor"]):
                break
        listed = [item["id"] for p in pages for item in p]
        assert len(pages) == 3 and len(listed) == 64 and listed == sorted(listed, reverse=True)
        with_fb = client.get("/v1/requests", params={"has_feedback": True, "limit": 500}, headers=ADMIN).json()["items"]
        assert sorted(i["request_id"] for i in with_fb) == sorted(ids[:40])
        flagged = client.get("/v1/requests", params={"flagged": True, "limit": 500}, headers=ADMIN).json()["items"]
        assert {i["request_id"] for i in flagged} == {a["request_id"] for a in answers if a["decision"] != "accept"}
        passed = client.get("/v1/requests", params={"flagged": False, "limit": 500}, headers=ADMIN).json()["items"]
        assert {i["request_id"] for i in passed} == {a["request_id"] for a in answers if a["decision"] == "accept"}  # not the refusal
        rejected = client.get("/v1/requests", params={"decision": "reject_ood", "model": "tiny"}, headers=ADMIN).json()["items"]
        assert all(i["decision"] == "reject_ood" for i in rejected)
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        assert client.get("/v1/requests", params={"since": future}, headers=ADMIN).json()["items"] == []
        # A span back from now, as the CLI takes it: all of this test's rows are in the last hour, none before.
        everything = client.get("/v1/requests", params={"limit": 500}, headers=ADMIN).json()["items"]
        assert client.get("/v1/requests", params={"since": "60m", "limit": 500}, headers=ADMIN).json()["items"] == everything != []
        assert client.get("/v1/requests", params={"until": "1h"}, headers=ADMIN).json()["items"] == []
        assert client.get("/v1/reports/summary", params={"since": "2h"}, headers=ADMIN).json()["requests"] == len(everything)
        for params, says in (({"since": "999999999d"}, "reaches back before year 1"), ({"model": ""}, "query.model: Value error, must not be empty")):
            refused = client.get("/v1/requests", params=params, headers=ADMIN)
            assert refused.status_code == 422 and says in refused.json()["error"]["message"], refused.text
        assert client.get("/v1/requests", params={"cursor": "garbage"}, headers=ADMIN).status_code == 400

        s = client.get("/v1/reports/summary", headers=ADMIN).json()
    assert s["requests"] == 64 and s["errors"] == 1
    assert sum(s["decisions"].values()) == 63 and sum(h["predictions"] for h in s["hourly"]) == 63
    fb = s["feedback"]
    right = sum(answers[i]["prediction"]["label"] == int(test.y[i]) for i in range(40))
    assert fb["n"] == 40 and abs(fb["accuracy"] - right / 40) < 1e-9
    assert 0 <= fb["ece"] <= 1 and sum(b["count"] for b in fb["reliability"]) == 40
    assert sum(s["confidence"]["counts"]) == 63 and abs(sum(s["confidence"]["reference"]) - 1) < 1e-6
    engine = make_engine(db_url)
    with engine.connect() as conn:
        blob = conn.scalar(select(RequestRecord.input_pixels).where(RequestRecord.request_id == ids[0]))
    engine.dispose()
    assert np.load(io.BytesIO(blob), allow_pickle=False).shape == (1, 28, 28)  # the stored model input
    drift = s["drift"]
    assert drift["model"] == "tiny/1" and drift["confidence"]["n_recent"] == 63 and drift["verdict"]
