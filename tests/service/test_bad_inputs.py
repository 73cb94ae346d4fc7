"""Every bad input in the README's table gets its documented 4xx, the one error shape, and a log row.

One app for the module (its lifespan costs seconds); rows are found by request id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db.audit import verify
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.errors import ApiError
from service.oip.binary import split_body
from service.settings import Settings
from tests.service import hostile as h
from tests.service.logrows import logged

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def app_url(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('bad') / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, max_upload_bytes=LIMIT, max_json_bytes=LIMIT, max_batch_images=4)
    with TestClient(create_app(s)) as client:
        yield client, url


def v2(data: Any, shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"json": {"inputs": [{"name": "input", "shape": shape or [1, 1, 28, 28], "datatype": "FP32", "data": data}], **extra}}


PIXELS = [0.0] * 784
TRUNCATED_PNG = h.encode(h.digit(), "PNG")[:-30]
#: The IHDR chunk's CRC (bytes 29-32) broken: PNG's magic bytes, a header Pillow will not open.
_PNG = h.encode(h.digit(), "PNG")
BROKEN_HEADER_PNG = _PNG[:29] + bytes(b ^ 0xFF for b in _PNG[29:33]) + _PNG[33:]
TRUNCATED_JPEG = h.encode(h.digit("RGB", 64), "JPEG")[:300]
RAW = "/v1/predict"
#: A whole `image` part, then the body ends without its close delimiter (`--xx--`).
UNCLOSED = b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + h.encode(h.digit(), "PNG") + b"\r\n"
IMG = {"content-type": "image/png"}
def v2_binary_and_data() -> dict[str, Any]:
    """One input sent both ways: its binary chunk and its JSON `data`."""
    both = v2(PIXELS)["json"]["inputs"][0] | {"parameters": {"binary_data_size": 4 * 784}}
    head = json.dumps({"inputs": [both]}).encode()
    return {"content": head + bytes(4 * 784), "headers": {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}}


#: Python's json refuses integers of over 4,300 digits with a plain ValueError.
HUGE_INTEGER = b'{"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [1' + b"0" * 5000 + b"]}]}"

# (id, method, path, request kwargs, status, code): the README's table, row by row.
ROWS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("empty-body", "POST", RAW, {"content": b"", "headers": IMG}, 400, "empty_body"),
    ("empty-multipart-field", "POST", RAW, {"files": {"image": ("a.png", b"", "image/png")}}, 400, "empty_body"),
    ("not-an-image", "POST", RAW, {"content": b"hello, I am text", "headers": IMG}, 415, "not_an_image"),
    ("truncated-png", "POST", RAW, {"content": TRUNCATED_PNG, "headers": IMG}, 422, "corrupt_image"),
    ("broken-header-png", "POST", RAW, {"content": BROKEN_HEADER_PNG, "headers": IMG}, 422, "corrupt_image"),
    ("truncated-jpeg", "POST", RAW, {"content": TRUNCATED_JPEG, "headers": {"content-type": "image/jpeg"}}, 422, "corrupt_image"),
    ("bomb-20000px", "POST", RAW, {"content": h.bomb_png(), "headers": IMG}, 413, "image_too_large"),
    ("bomb-6000px", "POST", RAW, {"content": h.bomb_png(6000), "headers": IMG}, 413, "image_too_large"),
    ("over-size-limit", "POST", RAW, {"content": b"\x89PNG" + b"\0" * LIMIT, "headers": IMG}, 413, "payload_too_large"),
    ("wrong-content-type", "POST", RAW, {"content": b"{}", "headers": {"content-type": "application/json"}}, 415, "unsupported_media_type"),
    ("missing-content-type", "POST", RAW, {"content": b"abc"}, 415, "missing_content_type"),
    ("no-image-field", "POST", RAW, {"files": {"file": ("a.png", TRUNCATED_PNG, "image/png")}}, 422, "missing_image_field"),
    ("query-parameter", "POST", RAW + "?model=nope", {"content": b"x", "headers": IMG}, 422, "unknown_parameter"),
    ("batch-query-parameter", "POST", "/v1/predict/batch?model=nope", {"files": [("images", ("a.png", TRUNCATED_PNG, "image/png"))]}, 422, "unknown_parameter"),
    ("text-image-field", "POST", RAW, {"content": b'--xx\r\nContent-Disposition: form-data; name="image"\r\n\r\n\x89PNG\r\n--xx--\r\n', "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 422, "not_a_file"),
    ("malformed-multipart", "POST", RAW, {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=y"}}, 400, "malformed_multipart"),
    ("animated-gif", "POST", RAW, {"content": h.animated_gif(), "headers": {"content-type": "image/gif"}}, 422, "multi_frame_image"),
    ("multipage-tiff", "POST", RAW, {"content": h.multipage_tiff(), "headers": {"content-type": "image/tiff"}}, 422, "multi_frame_image"),
    ("svg", "POST", RAW, {"content": h.SVG, "headers": {"content-type": "image/svg+xml"}}, 415, "not_an_image"),
    ("ico-not-allowed", "POST", RAW, {"content": h.encode(h.digit("RGBA", 32), "ICO"), "headers": IMG}, 415, "unsupported_format"),
    ("ppm-not-allowed", "POST", RAW, {"content": h.encode(h.digit(), "PPM"), "headers": IMG}, 415, "unsupported_format"),
    ("lab-mode-tiff", "POST", RAW, {"content": h.encode(h.digit("RGB").convert("LAB"), "TIFF"), "headers": IMG}, 415, "unsupported_image_mode"),
    ("unknown-model", "POST", "/v2/models/nope/infer", v2(PIXELS), 404, "unknown_model"),
    ("v2-nan", "POST", "/v2/models/tiny/infer", {"content": json.dumps(v2([float("nan")] * 784)["json"]), "headers": {"content-type": "application/json"}}, 422, "non_finite_values"),
    ("v2-inf", "POST", "/v2/models/tiny/infer", {"content": json.dumps(v2([float("inf")] + PIXELS[1:])["json"]), "headers": {"content-type": "application/json"}}, 422, "non_finite_values"),
    ("v2-wrong-shape", "POST", "/v2/models/tiny/infer", v2(PIXELS, [1, 3, 28, 28]), 422, "wrong_shape"),
    ("v2-over-batch", "POST", "/v2/models/tiny/infer", v2(PIXELS * 5, [5, 1, 28, 28]), 422, "wrong_batch_size"),
    ("v2-unknown-field", "POST", "/v2/models/tiny/infer", v2(PIXELS, sneaky=True), 422, "unknown_field"),
    ("malformed-json", "POST", "/v2/models/tiny/infer", {"content": b'{"inputs": [', "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("deep-json", "POST", "/v2/models/tiny/infer", {"content": b"[" * 50_000, "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("huge-json", "POST", "/v2/models/tiny/infer", {"content": b'{"inputs": [' + b"0," * LIMIT + b"0]}", "headers": {"content-type": "application/json"}}, 413, "payload_too_large"),
    ("huge-json-not-so-labelled", "POST", "/v2/models/tiny/infer", {"content": b'{"inputs": [' + b"0," * LIMIT + b"0]}", "headers": {"content-type": "application/octet-stream"}}, 413, "payload_too_large"),
    ("batch-stray-file-field", "POST", "/v1/predict/batch", {"files": [("image", ("a.png", TRUNCATED_PNG, "image/png")), ("images", ("b.png", TRUNCATED_PNG, "image/png"))]}, 422, "unexpected_file_field"),
    ("batch-missing-content-type", "POST", "/v1/predict/batch", {"content": b"abc"}, 415, "missing_content_type"),
    ("batch-only-a-stray-file-field", "POST", "/v1/predict/batch", {"files": [("image", ("a.png", TRUNCATED_PNG, "image/png"))]}, 422, "missing_image_field"),
    ("batch-over-limit", "POST", "/v1/predict/batch", {"files": [("images", (f"{i}.png", TRUNCATED_PNG, "image/png")) for i in range(5)]}, 413, "too_many_images"),
    ("unknown-path", "POST", "/v1/predict/nothing", {"content": b"x", "headers": IMG}, 404, "not_found"),
    ("trailing-slash", "POST", "/v1/predict/", {"content": b"x", "headers": {**IMG, "host": "evil.example"}}, 404, "not_found"),
    ("v2-wrong-input-name", "POST", "/v2/models/tiny/infer", {"json": {"inputs": [v2(PIXELS)["json"]["inputs"][0] | {"name": "pixels"}]}}, 422, "unknown_input"),
    ("v2-string-shape", "POST", "/v2/models/tiny/infer", v2(PIXELS, ["1", 1, 28, 28]), 422, "invalid_request"),
    ("v2-boolean-shape", "POST", "/v2/models/tiny/infer", v2(PIXELS, [True, 1, 28, 28]), 422, "invalid_request"),
    ("v2-float-shape", "POST", "/v2/models/tiny/infer", v2(PIXELS, [1.0, 1, 28, 28]), 422, "invalid_request"),
    ("v2-binary-and-data", "POST", "/v2/models/tiny/infer", v2_binary_and_data(), 400, "invalid_binary_data"),
    ("v2-huge-integer", "POST", "/v2/models/tiny/infer", {"content": HUGE_INTEGER, "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ("unclosed-multipart", "POST", RAW, {"content": UNCLOSED, "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 400, "malformed_multipart"),
    ("v2-string-flag", "POST", "/v2/models/tiny/infer", v2(PIXELS, parameters={"binary_data_output": "false"}), 400, "invalid_parameter"),
]


@pytest.mark.parametrize(("case", "method", "path", "kw", "status", "code"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_answer_and_log(app_url: tuple[TestClient, str], case: str, method: str, path: str, kw: dict[str, Any], status: int, code: str) -> None:
    client, url = app_url
    r = client.request(method, path, **kw)
    assert r.status_code == status, r.text
    err = error_of(r.json(), path)
    assert err["code"] == code and err["message"] and err["request_id"] == r.headers["x-request-id"]
    row = logged(url, err["request_id"])
    assert (row.http_status, row.error_code, row.decision) == (status, code, None)
    if path.startswith("/v1/predict/batch"):  # refused whole: the row describes no one image
        assert (row.input_bytes, row.input_sha256) == (None, None), case


def test_a_file_in_the_wrong_field_is_named_in_the_refusal(app_url: tuple[TestClient, str]) -> None:
    """`-F image=@d.png` to the batch and `-F images=@d.png` to /v1/predict are the two usual
    slips: the refusal names the field it found and the one to use."""
    client, _ = app_url
    batch = client.post("/v1/predict/batch", files=[("image", ("a.png", TRUNCATED_PNG, "image/png"))]).json()["error"]["message"]
    assert batch == "the multipart body has no file fields named 'images'; it has file field 'image': name every image's field 'images'"
    single = client.post(RAW, files=[("images", ("a.png", TRUNCATED_PNG, "image/png"))]).json()["error"]["message"]
    assert single.startswith("the multipart body has no file field named 'image'; it has file field 'images': name it 'image'")


def error_of(body: dict[str, Any], path: str) -> dict[str, Any]:
    """Vigil's error object; /v2 answers OIP's flat form, whose `error` is the message."""
    if path.startswith("/v2/"):
        return {"code": body["code"], "message": body["error"], "request_id": body["request_id"]}
    return body["error"]


def test_feedback_json_errors_are_named(app_url: tuple[TestClient, str]) -> None:
    """The v1 JSON endpoint: malformed JSON, unknown fields, huge bodies (not prediction requests: not logged)."""
    client, _ = app_url
    url, ctype = "/v1/requests/abc/feedback", {"content-type": "application/json"}
    cases = [
        (b'{"label": ', 422, "invalid_json"),
        (b'{"label": 1, "sneaky": true}', 422, "unknown_field"),
        (b"[" * 50_000, 422, "invalid_json"),
        (b'{"note": "' + b"x" * LIMIT + b'"}', 413, "payload_too_large"),
    ]
    for body, status, code in cases:
        r = client.post(url, content=body, headers=ctype)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body[:40]
    # The parser's own words and where, not FastAPI's "body.1: JSON decode error"; no body is
    # empty_body, as on the prediction routes (was 422 "body: Field required").
    bad = client.post(url, content=b"{bad", headers=ctype).json()["error"]["message"]
    assert bad == "the body is not valid JSON: Expecting property name enclosed in double quotes (at character 1)"
    empty = client.post(url, content=b"", headers=ctype)
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "empty_body")
    r = client.post(url + "?label=3", content=b'{"label": 1}', headers=ctype)  # not a second way to send it
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_parameter") and "'label'" in r.json()["error"]["message"]
    # Not JSON: refused for its type without a byte read (the route reads its body after the
    # key and type checks; FastAPI read it first, so a big one cost memory before its 401).
    r = client.post(url, content=b"x" * (LIMIT + 1), headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_feedback_documents_each_code_it_answers(app_url: tuple[TestClient, str]) -> None:
    """Each refusal of a feedback post is listed, by code, under its status in /docs (its 422
    said only "a malformed body"); malformed JSON stays 422 here (400 on /v2)."""
    client, _ = app_url
    url, ctype = "/v1/requests/abc/feedback", {"content-type": "application/json"}
    sent = [
        client.post(url, content=b"", headers=ctype),
        client.post(url, content=b"{bad", headers=ctype),
        client.post(url, content=b'{"label": 1, "sneaky": true}', headers=ctype),
        client.post(url, content=b"[1, 2]", headers=ctype),
        client.post(url, content=b'{"label": "1"}', headers=ctype),
        client.post(url, json={"label": 99}),
        client.post(url + "?x=1", json={"label": 1}),
        client.post(url, content=b'{"label": 1}', headers={"content-type": "text/plain"}),
        client.post(url, content=b'{"note": "' + b"x" * LIMIT + b'"}', headers=ctype),
        client.post(url, json={"label": 1}),
    ]
    answers = [(r.status_code, r.json()["error"]["code"]) for r in sent]
    assert answers == [(400, "empty_body"), (422, "invalid_json"), (422, "unknown_field"), (422, "invalid_request"), (422, "invalid_request"),
                       (422, "invalid_label"), (422, "unknown_parameter"), (415, "unsupported_media_type"), (413, "payload_too_large"),
                       (404, "unknown_request")]  # fmt: skip
    assert sent[3].json()["error"]["message"] == "the request body must be a JSON object"  # not pydantic's "valid dictionary"
    documented = client.get("/openapi.json").json()["paths"]["/v1/requests/{request_id}/feedback"]["post"]["responses"]
    assert [(s, c) for s, c in answers if f"`{c}`" not in documented[str(s)]["description"]] == []


def test_wrong_method_and_unknown_model_card_are_4xx_not_logged(app_url: tuple[TestClient, str]) -> None:
    client, _ = app_url
    assert client.get("/v1/predict").json()["error"]["code"] == "method_not_allowed"
    assert client.get("/v1/models/nope").json()["error"]["code"] == "unknown_model"


def test_an_unexpected_error_is_a_logged_500_through_every_layer(app_url: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a route (here: forced) still answers the one error shape with the request id,
    the security headers and, on /v2, the OIP shape, and leaves its request-log row."""
    client, url = app_url

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("forced")

    monkeypatch.setattr("service.routes.predict.decodes_quickly", boom)
    monkeypatch.setattr("service.oip.tensors.to_pixels", boom)
    for path, kw in ((RAW, {"content": h.encode(h.digit(), "PNG"), "headers": IMG}), ("/v2/models/tiny/infer", v2(PIXELS))):
        r = client.post(path, **kw)
        assert r.status_code == 500, r.text
        err = error_of(r.json(), path)
        assert err["code"] == "internal_error" and err["request_id"] == r.headers["x-request-id"]
        assert r.headers["x-content-type-options"] == "nosniff"
        row = logged(url, err["request_id"])
        assert (row.http_status, row.error_code) == (500, "internal_error")


@pytest.mark.parametrize("value", ["\xb2", "1\xb2", "\u0663", "-1", "99999", ""])
def test_binary_header_length_must_be_ascii_digits_within_the_body(value: str) -> None:
    """`str.isdigit` is true for "²" (latin-1 byte 0xb2, as Starlette decodes a raw header)
    and Arabic-Indic digits, on which `int()` raised: a 500. (The test client re-encodes
    header bytes as UTF-8, so this calls the parser directly.)"""
    with pytest.raises(ApiError) as e:
        split_body(b'{"inputs": []}', value)
    assert (e.value.status, e.value.code) == (400, "invalid_binary_header")
    assert split_body(b'{"a": 1}xyz', "8") == (b'{"a": 1}', b"xyz")


def test_a_bug_after_the_row_is_logged_does_not_log_it_twice(app_url: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The prediction's row is submitted, then serialising the answer fails: the 500 must not
    add a second row with the same id (the batch insert failed, the spool replay dropped the
    row, and the hash chain showed a gap)."""
    client, url = app_url

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("forced")

    monkeypatch.setattr("service.routes.predict.json_response", boom)
    r = client.post(RAW, content=h.encode(h.digit(), "PNG"), headers=IMG)
    assert r.status_code == 500
    rid = r.json()["error"]["request_id"]
    assert logged(url, rid).http_status == 200  # the prediction was made and logged before the failure
    monkeypatch.undo()
    later = [client.post(RAW, content=h.encode(h.digit(), "PNG"), headers=IMG) for _ in range(3)]
    logged(url, later[-1].json()["request_id"])  # rows after it are in: a dropped one would leave a gap in the chain
    time.sleep(0.5)  # and a failed batch has had time to go through the spool
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(RequestRecord).where(RequestRecord.request_id == rid)).scalar_one()
        assert count == 1
        assert verify(engine).ok
    finally:
        engine.dispose()


def predict_scope(content_type: bytes) -> dict[str, Any]:
    """The ASGI scope of a POST /v1/predict declaring a 50 kB body, for calling the app directly
    (a test client cannot hang up or be cancelled mid-upload)."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": RAW, "raw_path": RAW.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5555),
        "server": ("testserver", 80), "headers": [(b"content-type", content_type), (b"content-length", b"50000")],
    }  # fmt: skip


def test_a_client_that_hangs_up_mid_upload_is_logged_as_such_not_as_a_server_error(app_url: tuple[TestClient, str]) -> None:
    client, url = app_url
    messages = [{"type": "http.request", "body": b"--xx\r\nContent-Disposition: form-data", "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = predict_scope(b"multipart/form-data; boundary=xx")
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)  # the app's own event loop, as the server would
    rid = next(v.decode() for m in sent if m["type"] == "http.response.start" for k, v in m["headers"] if k == b"x-request-id")
    row = logged(url, rid)
    assert (row.http_status, row.error_code) == (499, "client_disconnected")


def test_a_request_cancelled_by_the_shutdown_timeout_keeps_its_row(app_url: tuple[TestClient, str]) -> None:
    """uvicorn cancels requests still running when VIGIL_SHUTDOWN_TIMEOUT_S is up (a stalled
    upload): each is logged before the request log drains, not lost."""
    client, url = app_url

    async def receive() -> dict[str, Any]:
        raise asyncio.CancelledError  # where a stalled upload waits when the server cancels it

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = predict_scope(b"image/png")
    assert client.portal is not None
    with pytest.raises(BaseException) as raised:  # the cancellation goes on after the row is written and answered
        client.portal.call(client.app, scope, receive, send)
    assert "Cancelled" in type(raised.value).__name__
    assert sent[0]["status"] == 503 and json.loads(sent[1]["body"])["error"]["code"] == "shutting_down"
    engine = make_engine(url)
    try:
        for _ in range(100):
            with engine.connect() as conn:
                rows = conn.execute(select(RequestRecord.http_status).where(RequestRecord.error_code == "shutting_down")).all()
            if rows:
                break
            time.sleep(0.05)
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(503,)]


def test_a_clients_long_text_is_quoted_back_cut(app_url: tuple[TestClient, str]) -> None:
    """A 60,000-character id, name or Content-Type came back whole in the message (60 kB answers)."""
    client, _ = app_url
    long = "a" * 60_000
    answers = [
        client.post(f"/v1/requests/{long}/feedback", json={"label": 1}),
        client.get(f"/v1/models/{long}"),
        client.get(f"/v2/models/{long}"),
        client.post(f"/v2/models/{long}/infer", json={"inputs": []}),
        client.post("/v2/models/tiny/infer", json={"inputs": [v2(PIXELS)["json"]["inputs"][0] | {"name": long}]}),
        client.post("/v2/models/tiny/infer", json={"inputs": v2(PIXELS)["json"]["inputs"], "outputs": [{"name": long}]}),
        client.get(f"/v1/models?{long}=1"),  # an unknown query parameter's name
        # Content-Types and a multipart field name, which the header bound lets reach 64 KiB.
        client.post("/v1/predict", content=b"x", headers={"content-type": "text/" + long}),
        client.post("/v1/predict/batch", content=b"x", headers={"content-type": "text/" + long}),
        client.post(f"/v1/requests/{'b' * 32}/feedback", content=b"{}", headers={"content-type": "text/" + long}),
        # (the multipart parser refuses a part header as long as the others)
        client.post("/v1/predict/batch", files=[(long[:4000], ("a.png", b"x", "image/png")), ("images", ("b.png", b"x", "image/png"))]),
        client.post("/v1/predict/batch", files=[(long[:4000], ("a.png", b"x", "image/png"))]),
    ]
    for r in answers:
        message = error_of(r.json(), str(r.url.path))["message"]
        assert 400 <= r.status_code < 500 and len(message) < 400 and "characters)" in message, (r.url.path[:40], message[:200])
