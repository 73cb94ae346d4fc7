"""/docs (issue 7): every endpoint documented with a summary, real error shapes and response examples."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.app import create_app
from service.docs_examples import EXAMPLES
from service.policy import MEANINGS
from service.routes.pages import STATIC_DIR
from service.settings import Settings
from tests.images import noise_png

SERVICE = STATIC_DIR.parent


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def conforms(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """Key-level check of a JSON value against a pydantic JSON schema: required keys, no unknown keys."""
    if "$ref" in schema:
        return conforms(value, defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [conforms(value, s, defs) for s in schema[key]]
            return [] if any(not o for o in options) else min(options, key=len)
    if schema.get("type") == "null":
        return [] if value is None else ["expected null"]
    if schema.get("type") == "array" and isinstance(value, list):
        return [p for v in value for p in conforms(v, schema.get("items", {}), defs)]
    if schema.get("type") == "object" and "properties" in schema:
        if not isinstance(value, dict):
            return [f"expected an object, got {value!r}"]
        props = schema["properties"]
        problems = [
            f"missing {k}" for k in schema.get("required", []) if k not in value
        ]
        problems += [
            f"unknown {k}"
            for k in value
            if k not in props and not schema.get("additionalProperties")
        ]
        return problems + [
            p
            for k, v in value.items()
            if k in props
            for p in conforms(v, props[k], defs)
        ]
    return []


@pytest.mark.parametrize("model", list(EXAMPLES), ids=lambda m: m.__name__)
def test_examples_match_their_schemas(model: type[BaseModel]) -> None:
    schema = model.model_json_schema(mode="serialization")
    assert conforms(EXAMPLES[model], schema, schema.get("$defs", {})) == []


def _has_example(schema: dict[str, Any], comps: dict[str, Any]) -> bool:
    if "example" in schema or "examples" in schema:
        return True
    if "$ref" in schema:
        return _has_example(comps[schema["$ref"].split("/")[-1]], comps)
    if schema.get("type") == "array":
        return _has_example(schema.get("items", {}), comps)
    return any(
        _has_example(s, comps) for k in ("anyOf", "oneOf") for s in schema.get(k, [])
    )


def test_every_endpoint_has_a_summary_examples_and_vigils_error_shapes(
    spec: dict[str, Any],
) -> None:
    comps = spec["components"]["schemas"]
    assert "HTTPValidationError" not in comps
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if not op.get("summary"):
                missing.append(f"{where}: summary")
            if not op.get("description"):
                missing.append(f"{where}: description")
            for status, resp in op["responses"].items():
                for ctype, content in resp.get("content", {}).items():
                    schema = content.get("schema", {})
                    binary = (
                        schema.get("format") == "binary"
                    )  # raw tensors: no JSON example
                    if not (
                        binary or "example" in content or _has_example(schema, comps)
                    ):
                        missing.append(f"{where}: {status} {ctype} example")
                    ref = content.get("schema", {}).get("$ref", "")
                    if status.startswith(("4", "5")) and ctype == "application/json":
                        expected = (
                            "OipError" if path.startswith("/v2") else "ErrorResponse"
                        )
                        if ref.split("/")[-1] not in (
                            expected,
                            "Health",
                            "Live",
                            "Ready",
                            "ModelReady",
                        ):
                            missing.append(f"{where}: {status} is not {expected}")
    assert missing == []


def test_field_meanings_use_the_model_cards_words(spec: dict[str, Any]) -> None:
    comps = spec["components"]["schemas"]
    decision = comps["PredictionPublic"]["properties"]["decision"]["description"]
    assert all(meaning in decision for meaning in MEANINGS.values())
    assert "samples" in comps["PredictionPublic"]["properties"]
    assert {"/v2/models/{name}/infer", "/metrics", "/v1/monitor"} <= set(spec["paths"])
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert (
        infer["requestBody"]["content"]["application/json"]["example"]["inputs"][0][
            "datatype"
        ]
        == "FP32"
    )


def test_each_error_status_has_its_own_real_example(spec: dict[str, Any]) -> None:
    """Not one shared `not_an_image` example for every 4xx and 5xx: each status shows a code
    the service really raises, in the path's error shape, and the codes differ by status."""
    sources = "\n".join(p.read_text() for p in SERVICE.rglob("*.py") if p.name != "docs_errors.py")
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = {}
            for status, resp in op["responses"].items():
                content = resp.get("content", {}).get("application/json", {})
                if not status.startswith(("4", "5")) or not content.get("schema", {}).get("$ref", "").endswith(("ErrorResponse", "OipError")):
                    continue
                example = content.get("example")
                assert example is not None, f"{method} {path} {status}"
                code = example["code"] if path.startswith("/v2") else example["error"]["code"]
                assert f'"{code}"' in sources, f"{method} {path} {status}: {code} is raised nowhere"
                codes[status] = code
            assert len(set(codes.values())) == len(codes), f"{method} {path}: {codes}"
    predict = spec["paths"]["/v1/predict"]["post"]["responses"]
    assert predict["401"]["content"]["application/json"]["example"]["error"]["code"] == "unauthorized"
    assert predict["503"]["content"]["application/json"]["example"]["error"]["code"] != "not_an_image"


def test_statuses_a_route_can_answer_are_declared(spec: dict[str, Any]) -> None:
    """With VIGIL_METRICS_ADMIN_ONLY the metrics and the monitor feed answer 401/403 (seen
    in test_access.py); v2's infer answers 500 like v1 when inference fails."""
    paths = spec["paths"]
    for path in ("/metrics", "/v1/monitor"):
        assert {"401", "403"} <= set(paths[path]["get"]["responses"]), path
    assert {"429", "500", "503"} <= set(paths["/v2/models/{name}/infer"]["post"]["responses"])


def test_each_documented_unknown_parameter_answer_is_what_the_route_says(tiny_bundle: Path, tmp_path: Path) -> None:
    """Every GET whose 422 documents `unknown_parameter` refuses a stray query parameter with
    exactly the documented message (the parameters it takes), and answers 200 without it."""
    admin = "admin-key-0123456789"
    settings = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / 'log.db'}", migrate_on_start=True, admin_api_keys=[admin])
    with TestClient(create_app(settings)) as client:
        rid = client.post("/v1/predict", content=noise_png(0), headers={"content-type": "image/png"}).json()["request_id"]
        name = client.get("/v1/models").json()[0]["name"]
        spec = client.get("/openapi.json").json()
        auth = {"authorization": f"Bearer {admin}"}
        checked = []
        for path, ops in spec["paths"].items():
            documented = ops.get("get", {}).get("responses", {}).get("422", {}).get("content", {}).get("application/json", {}).get("example")
            if documented is None or "verison" not in str(documented):
                continue
            url = path.replace("{name}", name).replace("{request_id}", rid)
            deadline = time.monotonic() + 10
            while (plain := client.get(url, headers=auth)).status_code == 404 and "{request_id}" in path:
                assert time.monotonic() < deadline  # the prediction's row is on its way to the database
                time.sleep(0.05)
            assert plain.status_code == 200, (path, plain.text)
            stray = client.get(f"{url}?verison=1", headers=auth)
            got = stray.json()
            message, want = (got["error"], documented["error"]) if path.startswith("/v2") else (got["error"]["message"], documented["error"]["message"])
            assert stray.status_code == 422 and message == want, (path, got, documented)
            checked.append(path)
    assert {"/v1/models", "/v1/models/{name}", "/v1/monitor", "/v1/requests/{request_id}", "/v2", "/v2/models/{name}", "/v2/models/{name}/ready"} <= set(checked)


def _raised(files: list[Path]) -> set[tuple[int, str]]:
    """(status, code) of every `ApiError(<status>, "<code>", ...)` written with literals in `files`."""
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError" and len(node.args) >= 2:
                status, code = node.args[:2]
                if isinstance(status, ast.Constant) and isinstance(code, ast.Constant):
                    found.add((status.value, code.value))
    return found


def test_v2_infer_documents_each_code_its_modules_raise(spec: dict[str, Any]) -> None:
    """Its 400 list missed `empty_body`, `invalid_parameter` and `invalid_binary_header`."""
    raised = _raised([*(SERVICE / "oip").glob("*.py"), SERVICE / "routes" / "v2.py"])
    assert {(400, "empty_body"), (400, "invalid_parameter"), (400, "invalid_binary_header")} <= raised  # the scan sees them
    responses = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    missing = sorted((s, c) for s, c in raised if f"`{c}`" not in responses.get(str(s), {}).get("description", ""))
    assert missing == []


def test_descriptions_say_what_the_code_does(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    since = next(p for p in paths["/v1/reports/summary"]["get"]["parameters"] if p["name"] == "since")
    assert "the 24 h before `until`" in since["description"]  # not "24 h ago" whatever `until` is
    for path in ("/v1/requests", "/v1/requests/{request_id}"):
        said = paths[path]["get"]["description"]
        assert "asynchronously" in said and "`not_stored_yet`" in said and "Retry-After" in said, path
    # Feedback's body schema refuses unknown fields as the server does (422 `unknown_field`).
    body = paths["/v1/requests/{request_id}/feedback"]["post"]["requestBody"]
    assert body["required"] and body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackCreate"}
    assert spec["components"]["schemas"]["FeedbackCreate"]["additionalProperties"] is False
