"""Per-request observation (issue 7): Prometheus counters/latency and one access-log line.

Pure ASGI, installed inside `RequestIdMiddleware` so the request id is already known.
Labels use the route *template* (`/v1/requests/{request_id}/feedback`), never the raw
path, so a scanner cannot blow up the metric cardinality.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics
from service.rejections import ALIASES

access_log = logging.getLogger("vigil.access")


def route_template(scope: Scope) -> str:
    route = getattr(scope.get("route"), "path", None)
    if route:
        # A hidden route answered by a public one's code is that operation, as its rows and
        # prediction counters have it (service/rejections.py).
        return ALIASES.get(str(route), str(route))
    # Mounted static files leave no route in the scope; one label covers them all.
    return "/static" if scope["path"].startswith("/static/") else "unmatched"


class ObserveMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, log_requests: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # An exception escaping the app becomes a 500 further out; count it as one.
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_template(scope)
        state = scope.get("state", {})
        method = state.get("method_as_sent", scope["method"])  # a HEAD served as its GET (service/head.py)
        self.metrics.observe_http(route, method, status, seconds)
        if not self.log_requests:
            return
        access_log.info(
            "%s %s %d",
            method,
            scope["path"],
            status,
            extra={
                "request_id": state.get("request_id"),
                "client_request_id": state.get("client_request_id"),
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            },
        )
