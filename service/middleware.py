"""Request id middleware (pure ASGI).

Every request gets a fresh server id (unique in the request log, used for feedback),
always sent back as `X-Vigil-Request-ID`. A client's own sane `X-Request-ID` is kept
beside it for correlation and echoed back in `X-Request-ID` (the server id goes there
when the client sent none); it is never used as the log key, because clients can (and
do) repeat ids.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's own X-Request-ID when it is sane (8-64 of A-Z a-z 0-9 . _ -), else None."""
    given = dict(headers).get(b"x-request-id", b"").decode("latin-1")
    return given if _VALID.match(given) else None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        client_rid = client_request_id(scope["headers"])
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["client_request_id"] = client_rid
        echo = (client_rid or rid).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend([(b"x-request-id", echo), (b"x-vigil-request-id", rid.encode())])
            await send(message)

        await self.app(scope, receive, send_with_id)
