"""Load shedding (pure ASGI): at most `limit` prediction requests in flight at once.

Past the limit a request is answered at once with 503 and Retry-After instead of
joining an ever longer line: memory stays bounded and the requests that are admitted
keep their normal latency. Admitted requests meet the batcher's own bounded queue
and the inference timeout behind this. Everything runs on one event loop, so a plain
counter is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body
from service.ratelimit import network_of
from service.rejections import PREDICT_PATH, log_rejection

#: The 503 this middleware answers, as the prediction routes document it: under load the
#: most common one, so every prediction route's 503 description names it first.
OVERLOADED_DOC = "more prediction requests in flight than VIGIL_MAX_INFLIGHT, or from one client than VIGIL_MAX_INFLIGHT_PER_CLIENT when set (`overloaded`)"


@dataclass
class Inflight:
    """Shared with app.state so tests, benchmarks and /metrics can read it."""

    limit: int
    current: int = 0
    shed: int = 0
    #: Requests in flight per client network (only while a per-client limit is set).
    by_client: dict[str, int] = field(default_factory=dict)


class InflightLimitMiddleware:
    def __init__(self, app: ASGIApp, gauge: Inflight, retry_after_s: int = 1, per_client: int = 0) -> None:
        self.app = app
        self.gauge = gauge
        self.retry_after = str(retry_after_s)
        self.per_client = per_client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not PREDICT_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        g = self.gauge
        if g.current >= g.limit:
            await self._shed(scope, receive, send, f"the service is at capacity ({g.limit} requests in flight)")
            return
        # Keyed only when the per-client limit is set: otherwise no work on the request path.
        client = (network_of(scope["client"][0]) if scope.get("client") else "") if self.per_client else None
        if client is not None and g.by_client.get(client, 0) >= self.per_client:
            await self._shed(scope, receive, send, f"this client has {self.per_client} requests in flight, its most (VIGIL_MAX_INFLIGHT_PER_CLIENT)")
            return
        g.current += 1
        if client is not None:
            g.by_client[client] = g.by_client.get(client, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            g.current -= 1
            if client is not None:
                g.by_client[client] -= 1
                if not g.by_client[client]:
                    del g.by_client[client]  # the map holds only clients with requests in flight

    async def _shed(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        self.gauge.shed += 1
        request = Request(scope, receive)
        msg = f"{why}; retry after {self.retry_after} s"
        log_rejection(request, 503, "overloaded", msg)
        body = error_body("overloaded", msg, getattr(request.state, "request_id", None))
        await JSONResponse(body, 503, headers={"Retry-After": self.retry_after})(scope, receive, send)
