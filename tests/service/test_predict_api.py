"""The v1 predict contract over the FastAPI test client, logged to SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import make_url, select

from service.app import create_app
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.settings import Settings
from tests.images import digit_png
from training.data import load_mnist


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_mnist(data_dir, train=False)
    return test.x[:20], test.y[:20]


def rows(db_url: str) -> list[RequestRecord]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        out = list(conn.execute(select(RequestRecord).order_by(RequestRecord.id)))
    engine.dispose()
    return out


def test_predict_contract_and_log(tiny_bundle: Path, db_url: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, _ = digits
    settings = Settings(model_dir=tiny_bundle, database_url=db_url, migrate_on_start=True)
    with TestClient(create_app(settings)) as client:
        multipart = client.post("/v1/predict", files={"image": ("d.png", digit_png(x[0]), "image/png")})
        raw = client.post("/v1/predict", content=digit_png(x[0]), headers={"content-type": "image/png"})
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()
    assert raw.status_code == 200
    # The same image through both upload forms gets the same answer.
    assert raw.json()["probabilities"] == body["probabilities"]
    assert body["model"] == {"name": "tiny", "version": "1", "method": "deterministic"}
    probs = body["probabilities"]
    assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-3
    assert body["prediction"]["label"] == max(range(10), key=probs.__getitem__)
    assert body["confidence"] == pytest.approx(max(probs), abs=1e-5)
    assert body["failure"]["flagged"] == (body["failure"]["score"] > body["failure"]["threshold"])
    assert body["ood"]["flagged"] == (body["ood"]["score"] > body["ood"]["threshold"])
    expected = "reject_ood" if body["ood"]["flagged"] else "abstain" if body["failure"]["flagged"] else "accept"
    assert body["decision"] == expected
    assert body["prediction"]["label"] in body["prediction_set"]
    assert multipart.headers["x-request-id"] == body["request_id"]

    logged = rows(db_url)
    assert [r.request_id for r in logged] == [body["request_id"], raw.json()["request_id"]]
    first = logged[0]
    assert first.http_status == 200 and first.error_code is None
    assert first.model_name == "tiny" and first.model_version == "1"
    assert first.predicted_label == body["prediction"]["label"]
    assert first.probabilities == pytest.approx(probs)
    assert first.decision == body["decision"]
    assert first.ood_score == pytest.approx(body["ood"]["score"])
    assert first.failure_flagged == body["failure"]["flagged"]
    assert first.input_width == 28 and first.input_height == 28
    assert len(first.input_sha256) == 64
    assert first.latency_ms > 0


BAD_INPUTS = [
    ("empty_body", b"", "image/png", 400, "empty_body"),
    ("not_an_image", b"hello, I am text", "image/png", 415, "not_an_image"),
    ("wrong_content_type", b"{}", "application/json", 415, "unsupported_media_type"),
    ("missing_content_type", b"abc", None, 415, "missing_content_type"),
]


@pytest.mark.parametrize(("case", "data", "ctype", "status", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_4xx_and_logged(
    tiny_bundle: Path, tmp_path: Path, case: str, data: bytes, ctype: str | None, status: int, code: str
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True))) as client:
        headers = {"content-type": ctype} if ctype else {}
        r = client.post("/v1/predict", content=data, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"] == r.headers["x-request-id"]
    (row,) = rows(url)
    assert (row.request_id, row.http_status, row.error_code) == (err["request_id"], status, code)
    assert row.decision is None and row.predicted_label is None


def test_truncated_png_is_422(tiny_bundle: Path, tmp_path: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    data = digit_png(digits[0][0])
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True))) as client:
        r = client.post("/v1/predict", files={"image": ("d.png", data[: len(data) // 2], "image/png")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "corrupt_image"
    (row,) = rows(url)
    assert row.error_code == "corrupt_image" and row.input_sha256 is not None


def test_a_multipart_preamble_is_skipped_as_rfc_2046_allows(tiny_bundle: Path, tmp_path: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    part = b'Content-Disposition: form-data; name="%s"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
    pngs = [digit_png(digits[0][i]) for i in range(2)]
    one = b"--xx\r\n" + part % b"image" + pngs[0] + b"\r\n--xx--\r\n"
    two = b"".join(b"--xx\r\n" + part % b"images" + png + b"\r\n" for png in pngs) + b"--xx--\r\n"
    ctype = {"content-type": "multipart/form-data; boundary=xx"}
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True))) as client:
        for path, body in (("/v1/predict", one), ("/v1/predict/batch", two)):
            plain = client.post(path, content=body, headers=ctype)
            prefaced = client.post(path, content=b"This is a message in MIME format.\r\n" + body, headers=ctype)
            assert plain.status_code == prefaced.status_code == 200, prefaced.text
            label = (lambda r: r.json()["prediction"]["label"]) if path == "/v1/predict" else (lambda r: [x["prediction"]["label"] for x in r.json()["results"]])
            assert label(prefaced) == label(plain)


def test_health_and_readiness(tiny_bundle: Path, db_url: str) -> None:
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=db_url, migrate_on_start=True))) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"model": True, "database": True, "request_log": True, "request_log_stored": True}
        assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200


def test_unmigrated_database_refuses_to_start(tiny_bundle: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(RuntimeError, match="vigil db upgrade"), TestClient(create_app(settings)):
        pass


@pytest.mark.postgres
def test_a_database_outage_keeps_the_service_ready_while_the_spool_takes_the_log(
    tiny_bundle: Path, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(model_dir=tiny_bundle, database_url=pg_url, migrate_on_start=True, log_spool_path=tmp_path / "spool.jsonl")
    name = make_url(pg_url).database
    admin = make_engine(make_url(pg_url).set(database="postgres").render_as_string(hide_password=False)).execution_options(isolation_level="AUTOCOMMIT")
    with TestClient(create_app(s)) as client:
        with admin.connect() as conn:  # the database goes away: no new connections, the open ones cut
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        try:
            ready = client.get("/readyz")
            # Predictions go on (their rows wait in the spool): taking every replica out of
            # rotation would turn a database outage into a service outage.
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"model": True, "database": False, "request_log": True, "request_log_stored": True}
            assert client.post("/v1/predict", content=digit_png(torch.zeros(1, 28, 28)), headers={"content-type": "image/png"}).status_code == 200
            deadline = time.monotonic() + 10  # the row's insert fails and it goes to the spool: still ready, not stored
            while (waiting := client.get("/readyz")).json()["checks"]["request_log_stored"]:
                assert time.monotonic() < deadline, waiting.text
                time.sleep(0.05)
            assert waiting.status_code == 200 and waiting.json()["checks"]["request_log"] is True
            monkeypatch.setattr(client.app.state.ctx.writer.fallback.spool, "path", Path("/proc/no-such-dir/spool.jsonl"))  # type: ignore[attr-defined]
            stuck = client.get("/readyz")  # and now nowhere to put a row: not ready
            assert stuck.status_code == 503 and stuck.json()["checks"]["request_log"] is False
            monkeypatch.undo()
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    admin.dispose()


def test_liveness_fails_once_the_inference_process_cannot_be_started(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from service.inference_process import UNRECOVERABLE_AFTER

    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(s)) as client:
        runtime = client.app.state.ctx.runtime  # type: ignore[attr-defined]
        assert client.get("/healthz").status_code == 200
        monkeypatch.setattr(runtime, "remote", SimpleNamespace(failed_restarts=UNRECOVERABLE_AFTER - 1, alive=False))
        assert client.get("/healthz").status_code == 200  # still trying: restarts may work
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/readyz").json()["checks"]["model"] is False  # but no traffic meanwhile
        monkeypatch.setattr(runtime, "remote", SimpleNamespace(failed_restarts=UNRECOVERABLE_AFTER, alive=False))
        dead, oip_dead = client.get("/healthz"), client.get("/v2/health/live")  # KServe probes the latter
        monkeypatch.undo()  # the real runtime shuts down
        assert dead.status_code == 503 and dead.json() == {"status": "not_ready", "checks": {"inference": False}}
        assert oip_dead.status_code == 503 and oip_dead.json() == {"live": False}


def test_readiness_answers_within_its_bound_when_the_database_stops_answering(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from service.routes import health

    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(s)) as client:
        assert client.get("/readyz").json()["checks"]["database"] is True
        assert "vigil_database_answers 1.0" in client.get("/metrics").text
        monkeypatch.setattr(health, "_select_one", lambda ctx: time.sleep(6) or True)  # a hung server: no answer, no error
        started = time.monotonic()
        ready = client.get("/readyz")
        took = time.monotonic() - started
        # /metrics says so too: a hung server is the outage no failed insert reports.
        assert "vigil_database_answers 0.0" in client.get("/metrics").text
    # Probes give up after 2-3 s: the answer must come first, saying the database is away.
    assert took < 4, took
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": True, "database": False, "request_log": True, "request_log_stored": True}


def test_a_full_request_log_refuses_predictions_with_retry_after(tiny_bundle: Path, tmp_path: Path, digits: tuple[torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> None:
    """503 log_backpressure, the one refusal that is not logged: the log is what is full."""
    from service.db.writer import QueueFull

    def full(record: object) -> None:
        raise QueueFull

    url = f"sqlite:///{tmp_path / 'log.db'}"
    png = digit_png(digits[0][0])
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True))) as client:
        writer = client.app.state.ctx.writer  # type: ignore[attr-defined]
        with monkeypatch.context() as m:
            m.setattr(writer, "submit", full)
            m.setattr(writer, "depth", lambda: writer.queue.maxsize)
            answers = [client.post("/v1/predict", content=png, headers={"content-type": "image/png"}),
                       client.post("/v1/predict/batch", files=[("images", ("a.png", png, "image/png"))])]  # fmt: skip
        for r in answers:
            assert (r.status_code, r.json()["error"]["code"], r.headers["retry-after"]) == (503, "log_backpressure", "1"), r.text
        assert client.post("/v1/predict", content=png, headers={"content-type": "image/png"}).status_code == 200  # room again
    assert [row.http_status for row in rows(url)] == [200]


def test_readiness_fails_while_neither_the_database_nor_a_full_disk_takes_rows(tiny_bundle: Path, tmp_path: Path, digits: tuple[torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty file can still be created on a full disk: the refused append is what counts."""
    from service.db.engine import make_engine
    from service.db.spool import Spool
    from service.routes import health

    async def away(ctx: object) -> bool:
        return False

    def disk_full(self: Spool, rows: object) -> None:
        raise OSError(28, "No space left on device")

    s = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, log_flush_ms=10, log_spool_path=tmp_path / "spool.jsonl")
    with TestClient(create_app(s)) as client:
        writer = client.app.state.ctx.writer  # type: ignore[attr-defined]
        monkeypatch.setattr(health, "_database_answers", away)
        assert client.get("/readyz").json()["checks"]["request_log"] is True  # the spool would take them
        monkeypatch.setattr(Spool, "append", disk_full)
        writer.engine = make_engine(f"sqlite:///{tmp_path / 'late.db'}")  # not migrated: inserts fail
        assert client.post("/v1/predict", content=digit_png(digits[0][0]), headers={"content-type": "image/png"}).status_code == 200
        deadline = time.monotonic() + 10
        while not writer.fallback.refusing:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["request_log"] is False
        monkeypatch.undo()  # the disk frees up: the row is spooled and the writer stops cleanly
