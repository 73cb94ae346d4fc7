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
from pydantic import BaseModel

from service.access import require_admin_for_metrics, require_client
from service.auth import require_admin
from service.docs_errors import error_example, example_body
from service.docs_examples import EXAMPLES
from service.oip.schemas import OipError
from service.query_params import query_names, reject_unknown_query
from service.schemas import ErrorResponse
from service.schemas_log import FeedbackCreate

FASTAPI_422 = "#/components/schemas/HTTPValidationError"
#: Request bodies a route reads itself (FastAPI then knows no model for them): the route's
#: `openapi_extra` refers to the schema, added to the components here.
HAND_READ_BODIES: tuple[type[BaseModel], ...] = (FeedbackCreate,)
GENERIC_422 = "Invalid parameters, in Vigil's error shape."


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
                    resp["description"] = GENERIC_422
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
    for m in (ErrorResponse, OipError, *HAND_READ_BODIES):
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


#: What every operation that lists the schemes does with a key (service.access.checked_key).
KEY_RULE = (
    "Every operation that lists this scheme checks a key that is sent, even where none is required: "
    "one that matches no configured key is refused with 401 `unauthorized` (unless no keys are configured at all). "
    "Operations that do not list it ignore keys."
)
#: How a key is presented (service.auth.presented_key): either scheme works on every endpoint.
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": f"`Authorization: Bearer <key>`. {KEY_RULE}"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": f"`X-API-Key: <key>`. {KEY_RULE}"},
}
KEY = [{name: []} for name in SECURITY_SCHEMES]
def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def key_rules(app: FastAPI) -> dict[str, bool]:
    """Path -> whether a key is always required, for every documented path that takes one, read
    from the routes' own dependencies: `require_admin` requires one; `require_client` (predict,
    feedback) and `require_admin_for_metrics` require one when the settings say so, and check
    one that is sent in any case."""
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


def strict_queries(app: FastAPI) -> dict[tuple[str, str], list[str]]:
    """(path, method) -> the query parameters it takes, for every documented operation whose
    dependencies refuse any other (`StrictQuery`)."""
    strict: dict[tuple[str, str], list[str]] = {}
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or not route.include_in_schema or reject_unknown_query not in set(_calls(dependant)):
            continue
        for method in route.methods:
            strict[(route.path_format, method.lower())] = sorted(query_names(dependant))
    return strict


def _strict_422(spec: dict[str, Any], strict: dict[tuple[str, str], list[str]]) -> None:
    """Each strict operation documents its 422 for a parameter it does not take; where nothing
    more specific is declared (FastAPI's generic 422 for a path parameter, or none at all),
    the description and example name the parameters it does take."""
    for (path, method), names in strict.items():
        op = spec["paths"].get(path, {}).get(method)
        if op is None:
            continue
        model = OipError if path.startswith("/v2") else ErrorResponse
        resp = op["responses"].get("422")
        if resp is not None and resp.get("description") != GENERIC_422:
            continue  # the route declares its own (predict, feedback, the log's filters)
        takes = ", ".join(names) or "none"
        ranges = ", or a value out of its range (`invalid_request`)" if names else ""
        op["responses"]["422"] = {
            "description": f"A query parameter this endpoint does not take (`unknown_parameter`; it takes: {takes}), or one given twice (`repeated_parameter`){ranges}.",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
        op["responses"]["422"]["content"]["application/json"]["example"] = example_body(
            path, "unknown_parameter", f"unknown query parameter 'verison'; this endpoint takes: {takes}"
        )


def install_openapi(app: FastAPI) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            _fix_errors(spec)
            _strict_422(spec, strict_queries(app))
            _add_examples(spec)
            _error_examples(spec)
            _security(spec, key_rules(app))
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
