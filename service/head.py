"""HEAD wherever GET works (RFC 9110, Sec. 9.3.2), without a second route per endpoint.

Uptime monitors and some load-balancer probes send HEAD; FastAPI routes answer only the
methods they declare, so HEAD /healthz was a 405. A HEAD request whose path a GET route
serves runs as that GET, and its body is dropped on the way out (headers, Content-Length
included, stay those of the GET). Any other HEAD goes through unchanged (405, as before).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes  # read per request: routers are included after the middleware is added

    def _served_by_get(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        as_get.setdefault("state", {})["method_as_sent"] = "HEAD"  # the access log and metrics say HEAD
        if not self._served_by_get(as_get):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # nothing of the body goes out; the last message ends the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(as_get, receive, without_body)
