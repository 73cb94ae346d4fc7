"""OpenAPI touch-ups (issue 7): real error shapes and examples on every endpoint in /docs.

FastAPI documents 422s with its own `HTTPValidationError`, but Vigil's handlers answer
with `ErrorResponse` (and `OipError` on /v2): the schema is rewritten to what clients
really get. Schemas without an example get one from service/docs_examples.py, and each
documented error status its own example from service/docs_errors.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from service.access import require_admin_for_metrics, require_client
from service.auth import require_admin
from service.docs_errors import error_example
from service.docs_examples import EXAMPLES
from service.oip.schemas import OipError
from service.schemas import ErrorResponse

FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _fix_errors(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        model = OipError if path.startswith("/v2") else ErrorResponse
        for op in ops.values():
            for resp in op.get("responses", {}).values():
                schema = (
                    resp.get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                )
                if schema.get("$ref") == FASTAPI_422:
                    schema["$ref"] = f"#/components/schemas/{model.__name__}"
                    resp["description"] = "Invalid parameters, in Vigil's error shape."
            # Every /v2 JSON body can be malformed: the handler answers 400 `invalid_json` for
            # it (on /v1 it is a 422 `invalid_json`, which the 422 already documents).
            if path.startswith("/v2") and "application/json" in op.get("requestBody", {}).get("content", {}):
                op["responses"].setdefault(
                    "400",
                    {
                        "description": "The body is not JSON (`invalid_json`).",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": f"#/components/schemas/{model.__name__}"
                                }
                            }
                        },
                    },
                )
    schemas = spec.get("components", {}).get("schemas", {})
    for m in (ErrorResponse, OipError):
        schemas.setdefault(
            m.__name__, m.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _add_examples(spec: dict[str, Any]) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    for model, example in EXAMPLES.items():
        target = schemas.get(model.__name__)
        if target is not None and "example" not in target:
            target["example"] = example


def _error_examples(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, resp in op.get("responses", {}).items():
                media = resp.get("content", {}).get("application/json")
                ref = (media or {}).get("schema", {}).get("$ref", "")
                if not status.isdigit() or not ref.endswith(("/ErrorResponse", "/OipError")) or "example" in media:
                    continue
                example = error_example(method, path, int(status))
                if example is not None:
                    media["example"] = example


#: How a key is presented (service.auth.presented_key): either scheme works on every endpoint.
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
KEY = [{name: []} for name in SECURITY_SCHEMES]
def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def key_rules(app: FastAPI) -> dict[str, bool]:
    """Path -> whether a key is always required, for every documented path that takes one, read
    from the routes' own dependencies: `require_admin` requires one; `require_client` (predict,
    feedback) and `require_admin_for_metrics` take one when the settings say so."""
    rules: dict[str, bool] = {}
    for route in iter_route_contexts(app.routes):  # through included routers, as the OpenAPI generator goes
        dependant = getattr(route, "dependant", None)
        if dependant is None or not route.include_in_schema:
            continue
        calls = set(_calls(dependant))
        if require_admin in calls:
            rules[route.path_format] = True
        elif calls & {require_client, require_admin_for_metrics}:
            rules.setdefault(route.path_format, False)
    return rules


def _security(spec: dict[str, Any], rules: dict[str, bool]) -> None:
    """Declare the key schemes, so that /docs has an Authorize button and generated clients
    can send a key: required on the admin operations, optional (`{}`) where it depends on
    the settings."""
    spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, required in rules.items():
        for op in spec["paths"].get(path, {}).values():
            op["security"] = KEY if required else [{}, *KEY]


def install_openapi(app: FastAPI) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            _fix_errors(spec)
            _add_examples(spec)
            _error_examples(spec)
            _security(spec, key_rules(app))
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
