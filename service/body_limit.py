"""Cap request bodies while they stream in (pure ASGI): JSON tightly, everything else loosely.

The limit is enforced on the bytes actually received, not only on Content-Length, so a
chunked body without a length is refused as soon as it passes the limit and is never
held whole. The refusal is raised from `receive()`, inside the route that reads the
body, so the app's error handlers turn it into the one error shape (413) and log it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.rejections import PREDICT_PATH


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large("the request body", None, limit))


def human_bytes(n: int) -> str:
    """``5 MiB``, ``25.8 MiB``, ``900 bytes``: sizes as a person reads them in an error message."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def too_large(what: str, size: int | None, limit: int) -> str:
    """The one wording of a size refusal: the size when known, the limit also in bytes."""
    measured = f"is {human_bytes(size)}" if size is not None else "exceeds the limit"
    return f"{what} {measured}; the limit is {human_bytes(limit)} ({limit} bytes)"


def byte_count(value: str | None) -> int | None:
    """A header's byte count, or None unless it is plain ASCII digits: `str.isdigit` also
    accepts "²" and other Unicode digits, on which `int()` then raises."""
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _is_json(ctype: bytes) -> bool:
    main = ctype.split(b";")[0].strip().lower()
    return main == b"application/json" or main.endswith(b"+json")


class BodyLimitMiddleware:
    """JSON bodies, and every body outside the upload paths, get the tight JSON limit; only the
    prediction paths (images, tensors) get the loose one. A feedback post read its body before
    its key was checked (FastAPI read it), so a 30 MB non-JSON body there cost memory before the 401."""

    def __init__(self, app: ASGIApp, json_limit: int, other_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.other_limit = other_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        upload = PREDICT_PATH.match(scope["path"]) is not None
        limit = self.other_limit if upload and not _is_json(headers.get(b"content-type", b"")) else self.json_limit
        declared = headers.get(b"content-length", b"")
        too_long = declared.isdigit() and int(declared) > limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_long:  # refuse before reading a byte of a body declared too long
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
