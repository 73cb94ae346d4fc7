"""One error shape for every client mistake: ``{"error": {code, message, request_id}}``."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.rejections import UNLOGGABLE, log_rejection

log = logging.getLogger("vigil.errors")
SHUTTING_DOWN = "the server shut down before the request was answered; retry (another replica may answer)"
#: FastAPI's answer when a JSON body parses badly in a way that is not a JSONDecodeError.
FASTAPI_BODY_ERROR = "There was an error parsing the body"


class ApiError(Exception):
    """A client-facing error with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


#: The most characters of a client's own text (an id, a name) an error message quotes back.
QUOTE_MAX = 80


def quoted(value: object) -> str:
    """`repr` of a client's value for an error message, cut to `QUOTE_MAX` characters: a
    60,000-character id must not come back as a 60 kB error. A non-string keeps its own repr
    (JSON's 1 or null must not read as the string '1' or 'None')."""
    shown = repr(value)
    return shown if len(shown) <= QUOTE_MAX else f"{shown[:QUOTE_MAX]}... ({len(value) if isinstance(value, str) else len(shown)} characters)"


def error_body(code: str, message: str, request_id: str | None) -> dict[str, dict[str, str | None]]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def internal_error(request: Request) -> JSONResponse:
    """The answer to a bug: no detail, but the request id to quote."""
    return JSONResponse(error_body("internal_error", "internal error; quote the request id", _rid(request)), 500)


class UnexpectedErrorMiddleware:
    """An exception no handler took becomes the 500 error shape *inside* the middleware stack.

    Starlette answers such exceptions from its outermost layer, outside every middleware:
    the answer lacked `X-Request-ID`, the security headers and, on /v2, the OIP error shape,
    and the request log never heard of the request. Added first, so it runs innermost, this
    answers the 500 itself and logs a prediction request like any refusal.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            # The server's shutdown timeout cancelled a request still in progress (a stalled
            # upload): it gets its row before the request log drains, and its answer in the
            # error shape (uvicorn's own is a text/plain 500), then the cancel goes on.
            if not started:
                request = Request(scope)
                log_rejection(request, 503, "shutting_down", SHUTTING_DOWN)
                answer = JSONResponse(error_body("shutting_down", SHUTTING_DOWN, _rid(request)), 503, headers={"Connection": "close"})
                try:
                    await answer(scope, receive, send)
                except Exception:  # noqa: BLE001 - the client may be gone; the row is written
                    log.info("could not answer a request cancelled at shutdown", extra={"request_id": _rid(request)})
            raise
        except ClientDisconnect:
            # The client went away mid-upload: not the service's error. Its request is
            # logged (499, as nginx names it); the answer goes nowhere. uvicorn ends the body
            # the same way when it refuses a malformed one (bad chunked encoding) with its own
            # 400, which the app never sees: the message names both causes.
            if not started:
                request = Request(scope)
                message = "the connection ended before the request was read (the client hung up, or the HTTP server refused a malformed body with its own 400)"
                log_rejection(request, 499, "client_disconnected", message)
                # An answer keeps the ASGI contract; the server drops it for a closed connection.
                await JSONResponse(error_body("client_disconnected", message, _rid(request)), 499)(scope, receive, send)
            return
        except Exception:
            if started:  # half an answer is out: nothing sensible can follow it
                raise
            request = Request(scope)
            log.exception("unhandled error", extra={"request_id": _rid(request)})
            try:
                log_rejection(request, 500, "internal_error", "unhandled error (see the service log)")
            except Exception:  # the client still gets its answer
                log.exception("could not log the failed request")
            await internal_error(request)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        # Not logged here: routes log their own refusals (with the input's hash), and
        # service/access.py logs the ones it makes before a route runs. A saturated log takes
        # no row, but the refusal is counted on /metrics.
        if exc.code in UNLOGGABLE:
            log_rejection(request, exc.status, exc.code, exc.message)
        return JSONResponse(error_body(exc.code, exc.message, _rid(request)), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = tuple(first.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        # Issue 8: name what is wrong (still 422, the status every such route documents).
        status, code = {"json_invalid": (422, "invalid_json"), "extra_forbidden": (422, "unknown_field")}.get(
            first.get("type", ""), (422, "invalid_request")
        )
        if code == "invalid_json":  # FastAPI's "body.1: JSON decode error": the parser's words and where
            at = f" (at character {loc[1]})" if len(loc) > 1 else ""
            msg = f"the body is not valid JSON: {first.get('ctx', {}).get('error', 'decode error')}{at}"
        elif first.get("type") == "missing" and loc == ("body",):  # as the other routes answer no body
            status, code, msg = 400, "empty_body", "the request has no body; send a JSON object"
        log_rejection(request, status, code, msg)
        return JSONResponse(error_body(code, msg, _rid(request)), status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        code = {400: "bad_request", 413: "payload_too_large"}.get(exc.status_code, code)
        code = getattr(exc, "code", code)  # a refusal that names itself (service.encoding)
        status = exc.status_code
        if status == 400 and exc.detail == FASTAPI_BODY_ERROR:  # e.g. JSON nested past the parser's depth
            status, code = 422, "invalid_json"
        log_rejection(request, status, code, str(exc.detail))
        return JSONResponse(error_body(code, str(exc.detail), _rid(request)), status, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only for errors in the middleware layers outside UnexpectedErrorMiddleware.
        # Loud, never silent: the traceback goes to the log, the client gets the request id.
        log.exception("unhandled error", extra={"request_id": _rid(request)})
        return internal_error(request)
