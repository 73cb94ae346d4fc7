"""HEAD wherever GET works (RFC 9110, Sec. 9.3.2), without a second route per endpoint.

Uptime monitors and some load-balancer probes send HEAD; FastAPI routes answer only the
methods they declare, so HEAD /healthz was a 405. Every HEAD request runs as a GET and
its body is dropped on the way out (headers, Content-Length included, stay those of the
GET). Where no GET route serves the path, the GET's own 404 or 405 (with its Allow
header) is the answer, as it was for the HEAD.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        as_get.setdefault("state", {})["method_as_sent"] = "HEAD"  # the access log and metrics say HEAD

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # nothing of the body goes out; the last message ends the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(as_get, receive, without_body)
