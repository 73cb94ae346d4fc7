"""Errors on `/v2/...` in the Open Inference Protocol's shape (issue 7).

OIP clients read `error` as a string: `tritonclient` formats it as `"[422] " + error`
and fails on Vigil's `{"error": {code, message, request_id}}` object. On /v2 paths this
middleware flattens that object to `{"error": message, "code": code, "request_id": id}`,
so the client's exception reads well and the machine code and request id are kept.
It rewrites responses from every layer (routes, auth, rate limits, shedding), which is
why it is a middleware rather than a change to each error source.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def flatten(body: bytes) -> bytes | None:
    """The OIP form of a Vigil error body, or None when the body is something else."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict) or "message" not in err:
        return None
    return json.dumps(
        {
            "error": err["message"],
            "code": err.get("code"),
            "request_id": err.get("request_id"),
        }
    ).encode()


class OipErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                    return
                start = (
                    message  # hold the headers until the (small) error body is complete
                )
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            body = flatten(body) or body
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() != b"content-length"
            ]
            await send(
                {
                    **start,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)
