"""Security headers on every response (pure ASGI), and the CORS policy.

Pages get a Content-Security-Policy that allows scripts, styles and connections from
this origin only (no inline scripts), may not be framed, and send no referrer; API
answers are `Cache-Control: no-store`. The
OpenAPI page (/docs) is FastAPI's own page builder on a local copy of Swagger UI
(service/docs_pages.py): it needs one inline bootstrap script and inline styles, so it
gets a policy that allows exactly that and nothing from elsewhere.
A route that sets a header itself keeps its own value.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs",)  # and its assets under /docs-assets
#: API answers are per request (predictions, the request log) or live state (health,
#: metrics): no cache, shared or private, may keep or replay them.
NO_STORE_PATHS = ("/v1/", "/v2", "/metrics", "/healthz", "/readyz")

HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else CSP
        extra = [(b"cache-control", b"no-store")] if scope["path"].startswith(NO_STORE_PATHS) else []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in [*HEADERS, *extra, (b"content-security-policy", csp.encode())] if k not in present)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with its refused preflights in the service's one error shape.

    Starlette answers them text/plain ("Disallowed CORS origin"); a client that parses every
    4xx as `{"error": {...}}` met the only error that was not.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request id, which the outer RequestIdMiddleware put in the scope, for the refusal.
        _preflight_rid.set(scope.get("state", {}).get("request_id") if scope["type"] == "http" else None)
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = bytes(response.body).decode()  # "Disallowed CORS origin, method, headers"
        failed = message.removeprefix("Disallowed CORS ").split(", ")
        hints = [CORS_HINTS[f](self) for f in failed if f in CORS_HINTS]
        body = error_body("cors_refused", f"{message} ({'; '.join(hints)})" if hints else message, _preflight_rid.get())
        return JSONResponse(body, response.status_code, headers={k: v for k, v in response.headers.items() if k.startswith("access-control-") or k == "vary"})


#: The request id of the request a CORS middleware is handling (its preflight answer has only the headers).
_preflight_rid: ContextVar[str | None] = ContextVar("cors_request_id", default=None)
#: What to do about each refused part of a preflight, in Starlette's words for them.
CORS_HINTS: dict[str, Callable[[CORSMiddleware], str]] = {
    "origin": lambda _: "VIGIL_CORS_ORIGINS lists the origins this service answers",
    "method": lambda m: f"this service answers {', '.join(sorted(m.allow_methods))} from other origins",
    "headers": lambda m: f"a request from another origin may send these headers: {', '.join(sorted(m.allow_headers))}",
}


def add_cors(app: FastAPI, origins: list[str]) -> None:
    """CORS stays closed (no Access-Control-* headers at all) unless origins are configured."""
    if not origins:
        return
    app.add_middleware(
        JsonCORSMiddleware,
        allow_origins=origins,
        allow_credentials=False,  # keys travel in headers, never cookies
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "x-api-key", "content-type", "x-request-id", "inference-header-content-length"],
        expose_headers=["x-request-id", "x-vigil-request-id", "retry-after"],
        max_age=600,
    )
