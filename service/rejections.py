"""Log every rejected prediction request, including those refused before a route runs.

A route logs the `ApiError`s it raises itself (with the input's hash and size).
Refusals made before or around the route body (a bad key, a rate limit, malformed or
oversized JSON, unknown fields, an unknown path, load shedding, HTTP that could not be
parsed) call `log_rejection`, from service/access.py, service/shedding.py,
service/http_protocol.py or the error handlers for validation and HTTP errors: so every refused prediction request leaves one row with its http_status
and error_code.
"""

from __future__ import annotations

import functools
import logging
import re

from starlette.requests import Request
from starlette.routing import compile_path

from service.db.writer import QueueFull
from service.records import base_record, refusal_fields

log = logging.getLogger("vigil.rejections")

#: POSTs to these paths are prediction requests, answered or not: v1 and OIP/KServe v2.
PREDICT_PATH = re.compile(r"^/v1/predict(/[^/]*)?$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
#: Hidden routes answered by a public one's code: credited to it, as the route credits its rows
#: (a metric label or a request-log endpoint per spelling of one operation would split it).
ALIASES = {"/v2/models/{name}/versions/{version}/infer": "/v2/models/{name}/infer"}
#: Codes that mean the log itself is saturated: logging them would only fail again.
UNLOGGABLE = {"log_backpressure"}


def is_predict_request(request: Request) -> bool:
    return request.method == "POST" and bool(PREDICT_PATH.match(request.url.path))


def mark_logged(request: Request) -> None:
    """A request gets at most one rejection row, however many layers refuse it."""
    request.state.logged = True


def route_template(request: Request) -> str | None:
    """The path template of the route this request is for, or None for an unknown path.

    Refusals made before routing (load shedding) have no `scope["route"]` yet: the app's
    routes are matched here, so they are credited to `/v1/predict`, not to "unmatched".
    """
    route = request.scope.get("route")
    if route is not None:
        return ALIASES.get(str(route.path), str(route.path))
    # The OpenAPI paths are the public list of route templates (the router's own matching is
    # FastAPI-internal); the schema is built once per app and cached. The aliases' own
    # templates are not in it (hidden routes), so they are matched too.
    path = request.url.path
    templates = [*request.app.openapi()["paths"], *ALIASES]
    template = next((t for t in templates if _pattern(t).match(path)), None)
    return None if template is None else ALIASES.get(template, template)


@functools.lru_cache(maxsize=256)
def _pattern(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


def log_rejection(request: Request, status: int, code: str, message: str) -> None:
    """Write a rejected-request row for a prediction request not already logged, and count the
    refusal on /metrics whether or not the log could take its row."""
    if status < 400 or not is_predict_request(request):
        return
    if getattr(request.state, "logged", False) or not hasattr(request.state, "request_id"):
        return
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:  # the lifespan has not built the service (yet)
        return
    template = route_template(request)
    # The route's template as the metrics label, never the raw path: one series per unknown
    # path a client invents would grow without bound.
    label = template or "unmatched"
    mark_logged(request)
    if code in UNLOGGABLE:
        if ctx.metrics is not None:
            ctx.metrics.observe_refusal(label, code)
        return
    record = base_record(request, ctx.bundle.manifest, ctx.settings.client_id_salt, (template or request.url.path)[:64])
    record.update(refusal_fields(status, code, message))
    try:
        ctx.writer.submit(record)
    except QueueFull:  # say so loudly; the client still gets its 4xx
        log.error("request log saturated: rejected request %s (%s) not logged", record["request_id"], code)
        if ctx.metrics is not None:  # under load above all, the refusals must still be counted
            ctx.metrics.observe_refusal(label, code)
    else:
        if ctx.metrics is not None:  # vigil_predictions_total counts every logged input (and its refusal)
            ctx.metrics.observe_record({**record, "endpoint": label})
