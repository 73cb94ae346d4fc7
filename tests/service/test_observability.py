"""/metrics (per-app Prometheus registry), JSON access logs and the request id (issue 7)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.db.engine import make_engine
from service.db.journal import Journal
from service.db.migrate import upgrade
from service.db.spool import Spool
from service.logs import JsonFormatter
from service.metrics import Metrics
from service.routes.pages import STATIC_DIR
from service.settings import Settings

GALLERY = STATIC_DIR / "gallery"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def value(
    all_samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> float:
    return all_samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_routes_statuses_decisions_and_queues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True
    )
    with TestClient(create_app(settings)) as client:
        png = {"content-type": "image/png"}
        assert (
            client.post(
                "/v1/predict",
                content=(GALLERY / "clear-7.png").read_bytes(),
                headers=png,
            ).json()["decision"]
            == "accept"
        )
        assert (
            client.post(
                "/v1/predict", content=(GALLERY / "noise.png").read_bytes(), headers=png
            ).json()["decision"]
            == "reject_ood"
        )
        assert (
            client.post("/v1/predict", content=b"not an image", headers=png).status_code
            == 415
        )
        x = np.zeros((2, 1, 28, 28)).flatten().tolist()
        v2 = client.post(
            "/v2/models/mnist-default/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": [2, 1, 28, 28],
                        "datatype": "FP32",
                        "data": x,
                    }
                ]
            },
        )
        assert v2.status_code == 200
        text = client.get("/metrics")
        assert value(samples(text.text), "vigil_log_journal_writable") == 1.0
        with monkeypatch.context() as m:  # a journal that cannot be written (a full disk)
            m.setattr(Journal, "writable", property(lambda self: False))
            assert value(samples(client.get("/metrics").text), "vigil_log_journal_writable") == 0.0
    assert text.headers["content-type"].startswith("text/plain")
    s = samples(text.text)
    route = "/v1/predict"
    assert (
        value(s, "vigil_http_requests_total", route=route, method="POST", status="200")
        == 2
    )
    assert (
        value(s, "vigil_http_requests_total", route=route, method="POST", status="415")
        == 1
    )
    assert (
        value(
            s, "vigil_http_request_duration_seconds_count", route=route, method="POST"
        )
        == 3
    )
    assert (
        value(
            s,
            "vigil_predictions_total",
            endpoint=route,
            status="200",
            decision="accept",
        )
        == 1
    )
    assert (
        value(
            s, "vigil_predictions_total", endpoint=route, status="415", decision="none"
        )
        == 1
    )
    assert value(s, "vigil_ood_rejections_total", endpoint=route) == 1
    # Which refusal it was, by the response's error code; the shedding series exist at 0.
    assert value(s, "vigil_refusals_total", endpoint=route, code="not_an_image") == 1
    assert s[("vigil_refusals_total", frozenset({("endpoint", route), ("code", "overloaded")}))] == 0
    assert sum(v for (n, _), v in s.items() if n == "vigil_refusals_total") == 1  # answered inputs are no refusals
    # Each input of a v2 batch is one logged prediction, counted under its route template.
    v2_decisions = sum(
        v
        for (n, labels), v in s.items()
        if n == "vigil_predictions_total"
        and ("endpoint", "/v2/models/{name}/infer") in labels
    )
    assert v2_decisions == 2
    assert value(s, "vigil_inference_batch_size_sum") >= 4  # warm-up batches count too
    for gauge in (
        "vigil_log_queue_depth",
        "vigil_log_writer_lag_seconds",
        "vigil_inference_queue_depth",
    ):
        assert (gauge, frozenset()) in s
    assert value(s, "vigil_log_records_written_total") >= 0
    assert s[("vigil_log_records_rejected_total", frozenset())] == 0  # present from the start, for an alert on any


def test_each_app_has_its_own_registry() -> None:
    a, b = Metrics(lambda: None), Metrics(lambda: None)
    a.observe_http("/x", "GET", 200, 0.01)
    assert a.registry is not b.registry
    assert "vigil_http_requests_total" in samples_text(
        a
    ) and 'route="/x"' not in samples_text(b)
    apps = [create_app(Settings()), create_app(Settings())]
    assert apps[0].state.metrics.registry is not apps[1].state.metrics.registry


def samples_text(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def test_one_json_access_line_per_request_with_the_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True
    )
    with (
        caplog.at_level(logging.INFO, logger="vigil.access"),
        TestClient(create_app(settings)) as client,
    ):
        r = client.post(
            "/v1/predict",
            content=(GALLERY / "clear-7.png").read_bytes(),
            headers={"content-type": "image/png", "x-request-id": "client-abc-123"},
        )
    assert (
        r.headers["x-request-id"] == "client-abc-123"
    )  # the client's id is echoed back...
    server_id = r.json()["request_id"]  # ...while the log key stays the server's own
    (record,) = [rec for rec in caplog.records if rec.name == "vigil.access"]
    line = json.loads(JsonFormatter().format(record))
    assert (
        line["request_id"] == server_id
        and line["client_request_id"] == "client-abc-123"
    )
    assert (line["route"], line["status"], line["method"], line["level"]) == (
        "/v1/predict",
        200,
        "POST",
        "info",
    )
    assert line["duration_ms"] > 0 and line["ts"].endswith("+00:00")


def test_json_formatter_keeps_exceptions_and_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.getLogger("vigil.x").makeRecord(
            "vigil.x",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("here",),
            sys.exc_info(),
            extra={"request_id": "r1"},
        )
    out = json.loads(JsonFormatter().format(rec))
    assert (out["message"], out["request_id"], out["level"], out["logger"]) == (
        "failed here",
        "r1",
        "error",
        "vigil.x",
    )
    assert "ValueError: boom" in out["exception"]


def test_refusals_before_the_route_are_counted_without_a_label_per_path(tmp_path: Path) -> None:
    """Every logged input counts in vigil_predictions_total, those refused before a route ran
    too (they were missing), under a bounded label: never the path a client made up."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, log_flush_ms=5)
    png = {"content-type": "image/png"}
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/predict/xyz", "/v1/predict/abc"):
            assert client.post(path, content=b"x", headers=png).status_code == 404
        assert client.post("/v1/predict", content=(GALLERY / "clear-7.png").read_bytes(), headers=png).status_code == 200
        s = samples(client.get("/metrics").text)
        written = value(s, "vigil_log_records_written_total")
        for _ in range(100):  # the writer flushes every few ms
            if written >= 3:
                break
            s = samples(client.get("/metrics").text)
            written = value(s, "vigil_log_records_written_total")
    counted = {labels: v for (n, labels), v in s.items() if n == "vigil_predictions_total"}
    assert value(s, "vigil_predictions_total", endpoint="unmatched", status="404", decision="none") == 2
    assert not any(dict(labels)["endpoint"] in ("/v1/predict/xyz", "/v1/predict/abc") for labels in counted)
    assert sum(counted.values()) == written == 3


def test_refusals_are_counted_when_the_log_is_saturated_and_a_versioned_route_under_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vigil_refusals_total must count refusals under load above all, when the request log
    cannot take their rows; and the hidden versioned v2 route is the v2 infer operation."""
    from service.db.writer import QueueFull

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, log_flush_ms=5,
                        require_api_key=True, api_keys=["client-key-0123456789abcdef0123"])  # fmt: skip
    key = {"x-api-key": "client-key-0123456789abcdef0123"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v2/models/mnist-default/versions/3/infer", json={}).status_code == 401
        writer = client.app.state.ctx.writer  # type: ignore[attr-defined]

        def saturated(record: object) -> None:
            raise QueueFull

        monkeypatch.setattr(writer, "submit", saturated)
        r = client.post("/v1/predict", content=b"not an image", headers={"content-type": "image/png", **key})
        assert (r.status_code, r.json()["error"]["code"]) == (503, "log_backpressure")  # its row could not be queued
        assert client.post("/v1/predict", content=b"x", headers={"content-type": "image/png"}).status_code == 401
        s = samples(client.get("/metrics").text)
    assert value(s, "vigil_refusals_total", endpoint="/v2/models/{name}/infer", code="unauthorized") == 1
    assert not any(dict(labels).get("endpoint", "").endswith("/versions/{version}/infer") for (n, labels) in s if n == "vigil_refusals_total")
    assert value(s, "vigil_http_requests_total", route="/v2/models/{name}/infer", method="POST", status="401") == 1  # the same operation
    assert not any(dict(labels).get("route", "").endswith("/versions/{version}/infer") for (n, labels) in s if n.startswith("vigil_http_request"))
    assert value(s, "vigil_refusals_total", endpoint="/v1/predict", code="log_backpressure") == 1
    assert value(s, "vigil_refusals_total", endpoint="/v1/predict", code="unauthorized") == 1  # its row was not queued either


def test_text_logs_escape_line_breaks_in_messages_but_keep_tracebacks() -> None:
    """A path a client sent must not start a forged line in the text log."""
    from service.logs import TextFormatter

    fmt = TextFormatter("%(levelname)s %(name)s: %(message)s")
    forged = logging.LogRecord("vigil.access", logging.INFO, __file__, 1, "GET %s", ("/x\n2026-11-30 INFO vigil.auth: admin",), None)
    assert fmt.format(forged) == "INFO vigil.access: GET /x\\n2026-11-30 INFO vigil.auth: admin"
    assert "\\n" not in getattr(forged, "message", "")  # other handlers see the record unchanged
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord("vigil", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert fmt.format(failed).count("\n") >= 2  # the traceback keeps its lines


@pytest.mark.parametrize(
    ("path", "template"),
    [("/v1/predict", "/v1/predict"), ("/v1/predict/batch", "/v1/predict/batch"),
     ("/v2/models/mnist-default/infer", "/v2/models/{name}/infer"), ("/v1/predict/xyz", None)],
)  # fmt: skip
def test_refusals_before_routing_are_credited_to_their_route(path: str, template: str | None) -> None:
    """Load shedding refuses before the router runs: its refusals must count under the route
    they were for (an alert on /v1/predict 503s would otherwise never see them)."""
    from starlette.requests import Request

    from service.rejections import route_template

    app = create_app(Settings())
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": b"", "headers": [], "app": app}
    assert route_template(Request(scope)) == template


def test_an_operator_sees_the_model_memory_and_a_spool_that_drains(tmp_path: Path) -> None:
    late = tmp_path / "late.db"  # not migrated yet: every insert fails, as against a database that is away
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, log_flush_ms=10, log_replay_interval_s=0.05)
    with TestClient(create_app(settings)) as client:
        first = samples(client.get("/metrics").text)
        info = {"name": "mnist-default", "version": "3", "method": "ensemble"}
        assert first[("vigil_model_info", frozenset(info.items()))] == 1.0
        assert value(first, "process_resident_memory_bytes") > 50e6  # the standard process collector
        # Every known series exists at 0 before its first event (rate() and absent() alerts).
        assert ("vigil_ood_rejections_total", frozenset({("endpoint", "/v1/predict/batch")})) in first
        assert value(first, "vigil_log_database_up") == 1.0 and value(first, "vigil_log_spool_bytes") == 0.0
        writer = client.app.state.ctx.writer  # type: ignore[attr-defined]
        writer.engine = make_engine(f"sqlite:///{late}")  # the database goes away
        for seed in range(3):
            client.post("/v1/predict", content=(GALLERY / "clear-7.png").read_bytes(), headers={"content-type": "image/png"})
        deadline = time.monotonic() + 10
        while writer.spooled < 3 or writer.fallback.replay_failures < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        down = samples(client.get("/metrics").text)
        assert value(down, "vigil_log_database_up") == 0.0 and value(down, "vigil_log_spool_bytes") > 0
        assert value(down, "vigil_log_replay_failures_total") >= 2 and value(down, "vigil_log_records_replayed_total") == 0
        upgrade(f"sqlite:///{late}")  # back
        while writer.replayed < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        up = samples(client.get("/metrics").text)
        assert value(up, "vigil_log_records_replayed_total") == 3 and value(up, "vigil_log_spool_bytes") == 0.0
        assert value(up, "vigil_log_database_up") == 1.0


def test_a_spool_that_cannot_be_read_leaves_the_scrape_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Root reads any folder, so the unreadable spool is made by its size check failing."""

    def unreadable(self: Spool) -> int:
        raise PermissionError(13, "Permission denied", str(self.path))

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True)
    with TestClient(create_app(settings)) as client:
        monkeypatch.setattr(Spool, "size", unreadable)
        with caplog.at_level(logging.WARNING, logger="vigil.metrics"):
            response = client.get("/metrics")
        assert response.status_code == 200
        scraped = samples(response.text)
        assert np.isnan(scraped[("vigil_log_spool_bytes", frozenset())])
        assert scraped[("vigil_log_database_up", frozenset())] == 1.0  # the rest still comes
        assert any("cannot be read" in r.getMessage() and "Permission denied" in r.getMessage() for r in caplog.records)


def test_rows_set_aside_as_rejected_are_counted_on_metrics(tiny_bundle: Path, tmp_path: Path) -> None:
    """A row the database refuses for its content goes to <spool>.rejected: /metrics counts it,
    for the alert its help text asks for."""
    from tests.service.logrows import record

    settings = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True,
                        log_spool_path=tmp_path / "spool.jsonl", log_replay_interval_s=0.05)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        client.app.state.ctx.writer.submit(record(0, http_status=None))  # type: ignore[attr-defined]  # NOT NULL: refused
        deadline = time.monotonic() + 10
        while value(s := samples(client.get("/metrics").text), "vigil_log_records_rejected_total") < 1:
            assert time.monotonic() < deadline, "the refused row was not counted"
            time.sleep(0.05)
    assert value(s, "vigil_log_records_rejected_total") == 1 and value(s, "vigil_log_records_replayed_total") == 0
