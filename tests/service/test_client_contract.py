"""What a client engineer relies on beyond the happy path (found by a black-box review):
a valid OpenAPI document with its key schemes, HEAD, one refusal for compressed bodies,
the server's own request id in a header of its own, no caching, repeated filters refused,
and a failed batch whose rows keep each item's cause."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from models.bundle import read_manifest
from service.app import create_app
from service.errors import ApiError
from service.settings import DEFAULT_MODEL_DIR, Settings
from tests.images import noise_png
from tests.service.test_log_writer import wait_for
from tests.service.test_predict_batch import logged

ADMIN = "admin-key-for-contract-tests"


@pytest.fixture(scope="module")
def served(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, admin_api_keys=[ADMIN], max_batch_images=4)
    with TestClient(create_app(s)) as c:
        yield c, url


def admin() -> dict[str, str]:
    return {"x-api-key": ADMIN}


def test_the_openapi_document_is_valid_and_declares_its_keys(served: tuple[TestClient, str]) -> None:
    c, _ = served
    spec = c.get("/openapi.json").json()
    validate(spec)  # raises on an invalid OpenAPI 3.1 document (a media type with a description was one)
    schemes = spec["components"]["securitySchemes"]
    assert {(v["type"], v.get("scheme") or v.get("name")) for v in schemes.values()} == {("http", "bearer"), ("apiKey", "X-API-Key")}
    keyed = [{name: []} for name in schemes]
    for path in ("/v1/requests", "/v1/requests/{request_id}", "/v1/reports/summary"):
        assert spec["paths"][path]["get"]["security"] == keyed, path  # a key is required
    for path, method in (("/v1/predict", "post"), ("/v2/models/{name}/infer", "post"), ("/metrics", "get")):
        assert spec["paths"][path][method]["security"] == [{}, *keyed], path  # a key is optional (settings decide)
    assert "security" not in spec["paths"]["/healthz"]["get"]
    raw = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"} <= set(raw)


def test_every_schema_example_validates_against_its_schema(served: tuple[TestClient, str]) -> None:
    c, _ = served
    spec = c.get("/openapi.json").json()
    checked = 0
    for name, schema in spec["components"]["schemas"].items():
        if "example" not in schema:
            continue
        root: dict[str, Any] = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft202012Validator(root).validate(schema["example"])
        checked += 1
    assert checked >= 15  # the examples /docs shows are all covered, not skipped


def test_the_served_prediction_matches_its_docs_example_in_shape(served: tuple[TestClient, str]) -> None:
    c, _ = served
    spec = c.get("/openapi.json").json()
    r = c.post("/v1/predict", content=noise_png(3), headers={"content-type": "image/png"})
    root = {"$ref": "#/components/schemas/PredictionPublic", "components": spec["components"]}
    jsonschema.Draft202012Validator(root).validate(r.json())
    # The example is the shipped model's answer: its name, version, method, scorers and thresholds.
    example = spec["components"]["schemas"]["PredictionPublic"]["example"]
    shipped = read_manifest(DEFAULT_MODEL_DIR)
    assert example["model"] == {"name": shipped.name, "version": shipped.version, "method": shipped.method}
    for role in ("failure", "ood"):
        served = getattr(shipped, role)
        assert example[role]["method"] == served.name and example[role]["threshold"] == pytest.approx(served.threshold, rel=1e-3)
    assert len(example["probabilities"]) == len(shipped.class_names) and example["samples"]["count"] == shipped.method_params["members"]


def test_head_works_wherever_get_does(served: tuple[TestClient, str]) -> None:
    c, _ = served
    for path, headers in (("/healthz", {}), ("/v1/models", {}), ("/v1/requests", admin())):
        got, head = c.get(path, headers=headers), c.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == str(len(got.content)), path
        assert head.headers["content-type"] == got.headers["content-type"]
    assert c.head("/v1/predict").status_code == 405  # POST only: HEAD is not invented there
    assert c.head("/no/such/path").status_code == 404
    assert c.head("/v1/requests").status_code == 401  # the GET's key check holds
    metrics = c.get("/metrics").text  # counted as the HEAD it was, not as a GET
    assert 'vigil_http_requests_total{method="HEAD",route="/healthz",status="200"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/v1/predict", {"content-type": "image/png"}, noise_png(1)),
        ("/v1/requests/abc/feedback", {"content-type": "application/json"}, b'{"label": 1}'),
        ("/v2/models/{name}/infer", {"content-type": "application/json"}, b'{"inputs": []}'),
    ],
)
def test_a_compressed_body_is_refused_as_such_everywhere(served: tuple[TestClient, str], path: str, headers: dict[str, str], body: bytes) -> None:
    c, _ = served
    name = c.get("/v1/models").json()[0]["name"]
    r = c.post(path.format(name=name), content=gzip.compress(body), headers={**headers, "content-encoding": "gzip"})
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    code = r.json()["code"] if path.startswith("/v2") else err["code"]
    assert code == "unsupported_encoding" and "gzip" in (err if isinstance(err, str) else err["message"])
    ok = c.post(path.format(name=name), content=body, headers={**headers, "content-encoding": "identity"})
    assert ok.status_code != 415  # identity is no encoding


def test_a_compression_hidden_behind_a_second_header_is_refused_too(served: tuple[TestClient, str]) -> None:
    c, _ = served
    headers = [("content-type", "image/png"), ("content-encoding", "gzip"), ("content-encoding", "identity")]
    r = c.post("/v1/predict", content=gzip.compress(noise_png(1)), headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_encoding")  # gzip, identity: still gzip
    both = [("content-type", "image/png"), ("content-encoding", "identity, identity")]
    assert c.post("/v1/predict", content=noise_png(1), headers=both).status_code == 200


def test_a_compressed_image_is_logged_with_its_cause(served: tuple[TestClient, str]) -> None:
    c, url = served
    r = c.post("/v1/predict", content=gzip.compress(noise_png(2)), headers={"content-type": "image/png", "content-encoding": "gzip"})
    rid = r.json()["error"]["request_id"]
    wait_for(lambda: rid in {row.request_id for row in logged(url)})
    rows = {row.request_id: row for row in logged(url)}
    assert (rows[rid].http_status, rows[rid].error_code) == (415, "unsupported_encoding")


def test_a_refused_encoding_is_quoted_in_the_answer_and_the_log(served: tuple[TestClient, str]) -> None:
    """The header's value came back raw: a right-to-left override (U+202E's UTF-8 bytes, read
    as Latin-1 with a C1 control among them) reached the message and the log unescaped."""
    c, url = served
    headers = [(b"content-type", b"image/png"), (b"content-encoding", b"\xe2\x80\xae gzip"), (b"content-encoding", b"x" * 500)]
    r = c.post("/v1/predict", content=noise_png(3), headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_encoding")
    message = r.json()["error"]["message"]
    assert message.isprintable() and "Content-Encoding: '\xe2\\x80\xae gzip,xxx" in message, message
    assert "(509 characters)" in message and len(message) < 200  # cut, as quoted() cuts every client string
    rid = r.json()["error"]["request_id"]
    wait_for(lambda: rid in {row.request_id for row in logged(url)})
    assert {row.request_id: row for row in logged(url)}[rid].error_message == message


def test_the_servers_request_id_has_a_header_of_its_own(served: tuple[TestClient, str]) -> None:
    c, _ = served
    own = c.post("/v1/predict", content=noise_png(4), headers={"content-type": "image/png", "x-request-id": "my-client-id-123"})
    rid = own.json()["request_id"]
    assert own.headers["x-request-id"] == "my-client-id-123"  # the client's, echoed for its correlation
    assert own.headers["x-vigil-request-id"] == rid != "my-client-id-123"  # the one feedback takes
    plain = c.post("/v1/predict", content=noise_png(4), headers={"content-type": "image/png"})
    assert plain.headers["x-request-id"] == plain.headers["x-vigil-request-id"] == plain.json()["request_id"]


def test_api_answers_are_not_cached(served: tuple[TestClient, str]) -> None:
    c, _ = served
    assert c.post("/v1/predict", content=noise_png(5), headers={"content-type": "image/png"}).headers["cache-control"] == "no-store"
    assert c.get("/v1/requests", headers=admin()).headers["cache-control"] == "no-store"
    assert c.get("/healthz").headers["cache-control"] == "no-store"
    assert "no-store" not in c.get("/").headers.get("cache-control", "")  # the demo page may be cached


def test_a_filter_given_twice_is_refused(served: tuple[TestClient, str]) -> None:
    c, _ = served
    r = c.get("/v1/requests?decision=accept&decision=reject_ood", headers=admin())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "repeated_parameter")
    assert "decision" in r.json()["error"]["message"]
    assert c.get("/v1/requests?decision=accept", headers=admin()).status_code == 200
    # A long name given twice is no name of the route's: refused as unknown, and cut.
    long = "d" * 30_000  # twice: within httpx's 64 KiB URL
    r = c.get(f"/v1/requests?{long}=1&{long}=2", headers=admin())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_parameter")
    assert len(r.json()["error"]["message"]) < 500


def test_a_second_file_in_a_single_prediction_is_named(served: tuple[TestClient, str]) -> None:
    c, _ = served
    files = [("image", ("a.png", noise_png(1), "image/png")), ("meta", ("m.json", b"{}", "application/json"))]
    r = c.post("/v1/predict", files=files)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unexpected_file_field")
    assert "/v1/predict/batch" in r.json()["error"]["message"]


def test_monitor_times_are_utc_with_z_like_every_other_endpoint(served: tuple[TestClient, str]) -> None:
    c, _ = served
    m = c.get("/v1/monitor").json()
    assert m["window"]["start"].endswith("Z") and m["window"]["end"].endswith("Z")
    assert all(b["start"].endswith("Z") for b in m["timeline"])


def test_a_batch_that_fails_in_inference_logs_each_items_own_cause(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, admin_api_keys=[ADMIN], max_batch_images=4)
    with TestClient(create_app(s)) as c:

        async def timed_out(pixels: Any) -> Any:
            raise ApiError(503, "inference_timeout", "inference took too long", {"Retry-After": "1"})

        monkeypatch.setattr(c.app.state.ctx.runtime, "run", timed_out)  # type: ignore[attr-defined]
        files = [("images", ("a.png", noise_png(1), "image/png")), ("images", ("b.png", b"x", "image/png"))]
        batch = c.post("/v1/predict/batch", files=files)
        name = c.get("/v1/models").json()[0]["name"]
        pixels = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
        tensor = {"inputs": [{"name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": pixels.ravel().tolist()}]}
        v2 = c.post(f"/v2/models/{name}/infer", json=tensor)
    assert batch.status_code == v2.status_code == 503
    rows = {r.request_id: (r.http_status, r.error_code) for r in logged(url)}
    b, t = batch.headers["x-vigil-request-id"], v2.headers["x-vigil-request-id"]
    assert rows[f"{b}-0"] == (503, "inference_timeout")
    assert rows[f"{b}-1"] == (415, "not_an_image")  # never sent to inference: its own refusal
    # v2 logs per input as on success, so each `<id>-<i>` a client holds finds its failure.
    assert rows[f"{t}-0"] == rows[f"{t}-1"] == (503, "inference_timeout") and t not in rows
