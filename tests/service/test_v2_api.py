"""Open Inference Protocol (KServe v2) endpoints over the test client (issue 7), shipped model."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.bundle import read_manifest
from service.app import create_app
from service.settings import DEFAULT_MODEL_DIR, Settings
from tests.images import digit_png
from tests.service.test_predict_api import rows
from training.data import load_mnist

MODEL = "/v2/models/mnist-default"


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_mnist(data_dir, train=False)
    return test.x[:3], test.y[:3]


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


@pytest.fixture
def client(log_url: str) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(database_url=log_url, migrate_on_start=True))
    ) as c:
        yield c


def tensor(x: torch.Tensor, shape: list[int] | None = None) -> dict[str, object]:
    return {
        "name": "input",
        "shape": shape or list(x.shape),
        "datatype": "FP32",
        "data": x.flatten().tolist(),
    }


def outputs(body: dict[str, object]) -> dict[str, list[object]]:
    return {o["name"]: o["data"] for o in body["outputs"]}  # type: ignore[index, union-attr]


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"{MODEL}/ready").json() == {
        "name": "mnist-default",
        "ready": True,
    }
    version = read_manifest(DEFAULT_MODEL_DIR).version
    assert client.get(f"{MODEL}/versions/{version}/ready").status_code == 200
    meta = client.get(MODEL).json()
    assert meta["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    ]
    names = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert names["probabilities"] == ("FP32", [-1, 10]) and names["decision"] == (
        "BYTES",
        [-1],
    )
    assert names["prediction_set"] == ("BOOL", [-1, 10])
    missing = client.get("/v2/models/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_model"
    # The shipped model answers exactly as /docs shows it.
    documented = client.get("/openapi.json").json()["paths"]["/v2/models/{name}"]["get"]["responses"]["404"]
    assert missing.json()["error"] == documented["content"]["application/json"]["example"]["error"]
    version = client.get(f"{MODEL}/versions/7")
    assert version.status_code == 404 and "in version '7'" in version.json()["error"]


def test_infer_matches_v1_and_logs_each_input(
    client: TestClient, log_url: str, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = digits
    r = client.post(f"{MODEL}/infer", json={"id": "call-1", "inputs": [tensor(x)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (
        "mnist-default",
        read_manifest(DEFAULT_MODEL_DIR).version,
        "call-1",
    )
    assert body["parameters"]["ood_method"] == read_manifest(DEFAULT_MODEL_DIR).ood.name
    out = outputs(body)
    assert out["predicted_label"] == y.tolist()
    assert out["decision"] == ["accept"] * 3
    probs = np.array(out["probabilities"]).reshape(3, 10)
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    assert np.array(out["prediction_set"]).reshape(3, 10)[np.arange(3), y.numpy()].all()
    # The same pixels through v1 (a lossless 28x28 PNG) give the same answer.
    v1 = client.post(
        "/v1/predict", content=digit_png(x[0]), headers={"content-type": "image/png"}
    ).json()
    assert probs[0].tolist() == pytest.approx(v1["probabilities"], abs=1e-6)
    assert out["ood_score"][0] == pytest.approx(v1["ood"]["score"], rel=1e-5)
    # [N, 28, 28] without the channel axis, nested data, a chosen subset of outputs.
    nested = {
        "name": "input",
        "shape": [1, 28, 28],
        "datatype": "FP32",
        "data": x[1, 0].tolist(),
    }
    r2 = client.post(
        f"{MODEL}/infer",
        json={
            "inputs": [nested],
            "outputs": [{"name": "decision"}, {"name": "request_id"}],
        },
    )
    assert [o["name"] for o in r2.json()["outputs"]] == ["decision", "request_id"]
    rid = r.headers["x-request-id"]
    assert out["request_id"] == [f"{rid}-{i}" for i in range(3)]
    client.app.state.ctx.writer.stop()  # type: ignore[attr-defined]
    logged = [row for row in rows(log_url) if row.endpoint == "/v2/models/{name}/infer"]
    assert [row.request_id for row in logged[:3]] == out["request_id"]
    assert [row.predicted_label for row in logged[:3]] == y.tolist()
    assert all(
        row.http_status == 200
        and row.input_mode == "F32x1"
        and row.input_bytes == 4 * 784
        for row in logged
    )


def _binary_request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f4").tobytes()
    head = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    head["parameters"] = {"binary_data_output": True}  # type: ignore[assignment]
    j = json.dumps(head).encode()
    return j + raw, {
        "Inference-Header-Content-Length": str(len(j)),
        "content-type": "application/octet-stream",
    }


def test_binary_tensor_extension_both_ways(
    client: TestClient, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = digits
    body, headers = _binary_request(x[:2].numpy())
    r = client.post(f"{MODEL}/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head, blob = json.loads(r.content[:n]), r.content[n:]
    pos, got = 0, {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        got[o["name"]] = blob[pos : pos + size]
        pos += size
    assert pos == len(blob)
    assert np.frombuffer(got["predicted_label"], "<i8").tolist() == y[:2].tolist()
    assert (
        np.frombuffer(got["probabilities"], "<f4").reshape(2, 10).argmax(1).tolist()
        == y[:2].tolist()
    )
    first_len = struct.unpack("<I", got["decision"][:4])[0]
    assert got["decision"][4 : 4 + first_len] == b"accept"


NAN = (
    '{"inputs":[{"name":"input","shape":[1,28,28],"datatype":"FP32","data":[NaN'
    + ",0" * 783
    + "]}]}"
)
INF = NAN.replace("NaN", "Infinity")
ZEROS = [0.0] * 784
BAD = [
    ("nan", NAN, 422, "non_finite_values"),
    ("infinity", INF, 422, "non_finite_values"),
    ("not_json", "{nope", 400, "invalid_json"),
    ("no_inputs", {"inputs": []}, 422, "invalid_request"),
    (
        "wrong_datatype",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 28, 28],
                    "datatype": "INT32",
                    "data": [0] * 784,
                }
            ]
        },
        422,
        "unsupported_datatype",
    ),
    (
        "wrong_shape",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 3, 28, 28],
                    "datatype": "FP32",
                    "data": ZEROS * 3,
                }
            ]
        },
        422,
        "wrong_shape",
    ),
    (
        "wrong_count",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 28, 28],
                    "datatype": "FP32",
                    "data": ZEROS,
                }
            ]
        },
        422,
        "wrong_element_count",
    ),
    (
        "out_of_range",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": [255.0] * 784,
                }
            ]
        },
        422,
        "out_of_range",
    ),
    (
        "strings",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": ["0.5"] * 784,
                }
            ]
        },
        422,
        "invalid_tensor_data",
    ),
    (
        "too_many",
        {
            "inputs": [
                {"name": "input", "shape": [65, 28, 28], "datatype": "FP32", "data": []}
            ]
        },
        422,
        "wrong_batch_size",
    ),
    (
        "two_inputs",
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0]}] * 2},
        422,
        "wrong_input_count",
    ),
    (
        "unknown_output",
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": ZEROS,
                }
            ],
            "outputs": [{"name": "logits"}],
        },
        400,
        "unknown_output",
    ),
    (
        "repeated_output",
        {"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": ZEROS}], "outputs": [{"name": "decision"}, {"name": "decision"}]},
        400,
        "repeated_output",
    ),
    (
        "classification_extension",
        {"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": ZEROS}], "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]},
        400,
        "unsupported_parameter",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "status", "code"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_requests_are_4xx_in_the_oip_error_shape_and_logged(
    client: TestClient, log_url: str, case: str, payload: object, status: int, code: str
) -> None:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    r = client.post(
        f"{MODEL}/infer", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    # OIP's error shape (a string that tritonclient prints), with Vigil's code and request id beside it.
    err = r.json()
    assert isinstance(err["error"], str) and err["error"]
    assert err["code"] == code and err["request_id"] == r.headers["x-request-id"]
    client.app.state.ctx.writer.stop()  # type: ignore[attr-defined]
    (row,) = rows(log_url)
    assert (row.request_id, row.http_status, row.error_code) == (
        err["request_id"],
        status,
        code,
    )


def test_infer_takes_json_or_triton_binary_and_no_query(log_url: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """An HTML form's types (which a browser posts cross-site without asking) are refused, as
    are query parameters the route does not take; each refusal is a request-log row."""
    x, _ = digits
    body = json.dumps({"inputs": [tensor(x[:1])]}).encode()
    refused = []
    with TestClient(create_app(Settings(database_url=log_url, migrate_on_start=True))) as c:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "image/png"):
            r = c.post(f"{MODEL}/infer", content=body, headers={"content-type": ctype})
            assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), ctype
            assert ctype.split(";")[0] in r.json()["error"]
            refused.append(r.json()["request_id"])
        for ctype in ("application/json", "application/json; charset=utf-8", "application/octet-stream", None):
            headers = {} if ctype is None else {"content-type": ctype}  # Triton's clients send none
            assert c.post(f"{MODEL}/infer", content=body, headers=headers).status_code == 200, ctype
        # ... but a browser does not get to: fetch(no-cors) with a Blob body sends no type either.
        r = c.post(f"{MODEL}/infer", content=body, headers={"origin": "https://elsewhere.example"})
        assert (r.status_code, r.json()["code"]) == (415, "missing_content_type")
        refused.append(r.json()["request_id"])
        # A JSON non-string in a refusal keeps its JSON look: 1, not '1'.
        flag = c.post(f"{MODEL}/infer", json={"inputs": [tensor(x[:1])], "parameters": {"binary_data_output": 1}}).json()
        assert flag["error"] == "parameters.binary_data_output must be true or false, got 1"
        version = read_manifest(DEFAULT_MODEL_DIR).version
        for path in (f"{MODEL}/infer?model=other", f"{MODEL}/versions/{version}/infer?version=99", f"{MODEL}/infer?decison=1"):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert (r.status_code, r.json()["code"]) == (422, "unknown_parameter"), path
            refused.append(r.json()["request_id"])
        # The unversioned route takes the version as a query parameter: the served one answers.
        assert c.post(f"{MODEL}/infer?version={version}", content=body, headers={"content-type": "application/json"}).status_code == 200
    logged = {r.request_id: (r.http_status, r.error_code) for r in rows(log_url)}
    assert [logged[rid] for rid in refused] == [(415, "unsupported_media_type")] * 4 + [(415, "missing_content_type")] + [(422, "unknown_parameter")] * 3


@pytest.mark.parametrize(("size", "says"), [(-4, "binary_data_size must be 0 or more, got -4"), (10**6, "binary_data_size runs past the end of the body (1000000 bytes declared, 3136 left)")])
def test_a_wrong_binary_size_says_which_way_it_is_wrong(client: TestClient, digits: tuple[torch.Tensor, torch.Tensor], size: int, says: str) -> None:
    body, headers = _binary_request(digits[0][:1].numpy())
    head_len = int(headers["Inference-Header-Content-Length"])
    head = json.loads(body[:head_len])
    head["inputs"][0]["parameters"]["binary_data_size"] = size
    j = json.dumps(head).encode()
    r = client.post(f"{MODEL}/infer", content=j + body[head_len:], headers={**headers, "Inference-Header-Content-Length": str(len(j))})
    assert (r.status_code, r.json()["code"], r.json()["error"]) == (400, "invalid_binary_data", says)


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b"{nope", {}, "the request body is not JSON: Expecting property name"),  # no "header" in a plain JSON request
        (b"[" * 100_000, {}, "the request body is not JSON: it is nested too deeply"),  # not Python's recursion message
        # Tensor bytes without the header's length: named, instead of a codec's complaint.
        (np.full(784, 0.7, np.float32).tobytes(), {"content-type": "application/octet-stream"}, "needs the Inference-Header-Content-Length header"),
        (b"{nope" + b"\x00" * 8, {"content-type": "application/octet-stream", "inference-header-content-length": "5"}, "the JSON header (the first 5 bytes"),
    ],
)
def test_a_body_that_is_not_json_is_described_in_the_clients_terms(client: TestClient, body: bytes, headers: dict[str, str], says: str) -> None:
    r = client.post(f"{MODEL}/infer", content=body, headers={"content-type": "application/json", **headers})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json") and says in r.json()["error"], r.text


def test_validation_errors_name_the_body_not_pydantic(client: TestClient) -> None:
    """Locations are steps into the body (no union member tags such as
    `function-after[unicode_only(), str]`), a union's failures are one "must be", and no empty
    location or Python class name (`instance of InferRequest`) is shown."""
    pixels = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
    cases: list[tuple[object, str]] = [
        ({"inputs": [pixels], "parameters": {"x": {"y": 1}}}, "parameters.x: must be a string, number or boolean"),
        ({"inputs": [pixels], "outputs": [{"name": "decision", "parameters": {"int": [1]}}]}, "outputs.0.parameters.int: must be a string, number or boolean"),
        ({"inputs": [pixels], "parameters": {"x": "\ud800"}}, "parameters.x: must be valid Unicode text (no lone surrogate such as \\ud800)"),
        ({"inputs": [pixels], "parameters": {"\ud800": 1}}, "parameters: a key must be valid Unicode text (no lone surrogate such as \\ud800)"),
        ({"inputs": [pixels], "parameters": {"k" * 300: [1]}}, f"parameters[{'k' * 300!r:.80}... (300 characters)]: must be a string, number or boolean"),
        (None, "the request body must be a JSON object"),
        ([1, 2], "the request body must be a JSON object"),
        ({"inputs": "x"}, "inputs: must be an array"),
        ({"inputs": [{**pixels, "shape": [1.5]}]}, "inputs.0.shape.0: must be an integer"),
    ]
    for payload, says in cases:
        r = client.post(f"{MODEL}/infer", content=json.dumps(payload), headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["code"], r.json()["error"]) == (422, "invalid_request", says), payload


def test_non_finite_values_are_told_in_the_terms_they_were_sent_in(client: TestClient) -> None:
    x = np.full((1, 1, 28, 28), 0.5, np.float32)
    x[0, 0, 3, 4] = np.nan
    body, headers = _binary_request(x)
    r = client.post(f"{MODEL}/infer", content=body, headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "non_finite_values")
    assert r.json()["error"] == "the binary tensor data of input 'input' contains NaN or infinite FP32 values"  # no word of JSON numbers
    as_json = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x.flatten().tolist()}]}
    r = client.post(f"{MODEL}/infer", content=json.dumps(as_json), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (422, "non_finite_values") and "a JSON number beyond FP32's range" in r.json()["error"]
