"""Refuse compressed request bodies (pure ASGI), on every endpoint alike.

No route inflates a body: a gzipped PNG read as an image was a 415 `not_an_image`, gzipped
feedback a 422 `invalid_json`, and only /v2 said what was wrong. The refusal is raised
from `receive()`, like the body cap's, so it happens only where a body is read and the
app's handlers give it the one error shape and log it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import quoted

#: The only Content-Encoding a body may declare (RFC 9110: no transformation).
IDENTITY = (b"", b"identity")


def declared_encoding(scope: Scope) -> bytes:
    """Every Content-Encoding header of the request as one list (RFC 9110 combines repeats:
    `gzip` then `identity` is `gzip, identity`, still compressed), lower case, no spaces."""
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-encoding"]
    return b",".join(t.strip() for v in values for t in v.lower().split(b","))


class EncodedBody(HTTPException):
    code = "unsupported_encoding"

    def __init__(self, encoding: str) -> None:
        # Quoted as every client string is: raw, its control characters (a bidi override,
        # a C1 byte) reached the response and the request log's error_message as sent.
        super().__init__(415, f"compressed request bodies are not accepted (Content-Encoding: {quoted(encoding)}); send the bytes as they are")


class RefuseEncodedBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        encoding = declared_encoding(scope) if scope["type"] == "http" else b""
        if all(token in IDENTITY for token in encoding.split(b",")):
            await self.app(scope, receive, send)
            return

        async def refusing_receive() -> Message:
            raise EncodedBody(encoding.decode("latin-1"))  # quoted() cuts a long one

        await self.app(scope, refusing_receive, send)
