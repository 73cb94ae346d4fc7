"""uvicorn's HTTP protocol, with Vigil's answers to the requests it refuses before the app runs.

uvicorn's httptools protocol answers a request it cannot parse (a bad request line, a header
without a colon, a bad chunk size) with a text/plain 400 of its own. A client expecting the
API's one error shape got a line of prose instead, with no request id to quote. It also reads
a request line and headers of any length into memory: unlike its h11 protocol, it has no
limit, so one connection could make the process buffer megabytes of headers.

`VigilHttpProtocol` answers both with the error shape (service/errors.py), the request id
header and the security headers:
- 400 `malformed_request` where uvicorn answered text/plain;
- 431 `request_head_too_large` when a request line and headers pass `MAX_HEAD_BYTES`, as
  nginx does beyond its header buffers, counted as sent: as soon as that much arrived without
  the head ending, or when a head that arrived at once ends (uvicorn answered a target over
  64 KiB with its text/plain 400, since its URL parser's offsets are 16-bit). After the head,
  reads that move the body on not at all (a chunked body's trailer that never ends) count
  against the same bound; trailers are dropped, as ASGI carries none.
Whose refusal it is decides its request id and when it is sent:
- a request refused before routing gets a new id. When its method and target were read whole
  (the parser stopped past the target, or a header followed it) and it is a prediction
  request, it gets its request-log row, as every refused prediction request does
  (service/rejections.py), under the client and scheme uvicorn's proxy-headers middleware
  would have given the app; one refused before that names no path that could be trusted and
  gets only the warning;
- a request whose body is being read (bad chunk framing) keeps its own id, under which the app
  logs it (499: it sees the connection end);
- a pipelined request behind one still being answered is refused after that answer, since
  HTTP answers in order: sent at once, the refusal took the earlier request's place.
Every refusal carries X-Request-ID (the client's own, when it was read and sane) as the app's
answers do. Each is one warning in the service log, with its request id and client; uvicorn's
own "Invalid HTTP request received." beside it is dropped, as it said the same without the id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body
from service.middleware import client_request_id
from service.rejections import log_rejection
from service.security_headers import CSP, HEADERS

log = logging.getLogger("vigil.http")

#: The most bytes a request line and its headers may take. nginx's default
#: (large_client_header_buffers 4 8k) refuses a header line over 8 KiB; 64 KiB in all leaves
#: room for long cookies and tokens, and bounds what a connection can make the process hold.
MAX_HEAD_BYTES = 64 * 1024
#: Seconds a request head may take from its connection (or from its first byte, for a later
#: request on it) to its blank line. uvicorn sets none: a connection that sent nothing, or a
#: header line every 30 s, stayed open for good, and a thousand of them took every file
#: descriptor of a service with the common limit of 1024 (Apache's mod_reqtimeout: 20-40 s).
HEAD_TIMEOUT_S = 20.0
#: What uvicorn's protocol logs before it calls `send_400_response`, which logs our own warning.
UVICORN_PARSE_WARNING = "Invalid HTTP request received."


class _WithoutParseWarning:
    """uvicorn's "uvicorn.error" logger as one connection uses it, less its parse warning."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:  # level, log, error...: the logger's own
        return getattr(self._logger, name)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg != UVICORN_PARSE_WARNING:
            self._logger.warning(msg, *args, stacklevel=2, **kwargs)


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a request already refused."""


class VigilHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds the request head and refuses in the API's error shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _WithoutParseWarning(self.logger)  # type: ignore[assignment]

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def, override]  # uvicorn's signature
        super().connection_made(transport)
        self._in_head = True  # until the first request's headers are complete
        self._head_bytes = 0  # raw bytes of the head being read, over reads
        self._stale_bytes = 0  # bytes after the head that moved the parser nowhere (a trailer that never ends)
        self._message_ended = self._progress = False  # within the current read
        #: A refusal of a pipelined request, held until the answers before it are out, with
        #: the method and target it is logged under.
        self._pending: tuple[int, str, str, tuple[bytes, bytes] | None] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._began = False  # the parser has begun a request (past any blank lines) not yet complete
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._began = True
        if self._head_timer is None:  # a later request on the connection: timed from its first byte
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            super().on_header(name, value)
            return
        # A chunked body's trailer. uvicorn appended it to the headers the app already holds;
        # ASGI has no request trailers, so it is dropped. Trailer lines never move the body on,
        # so `data_received` counts them as stale bytes against the bound.

    def on_headers_complete(self) -> None:
        # The head's bytes as sent (request line, "name: value" lines, the blank line): the
        # same count `data_received` keeps over reads, so a head gets the same answer whether
        # it came in one read or in many.
        line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1\r\n") + 1
        if line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2 > MAX_HEAD_BYTES:
            self._refuse_too_large(self._request_line())
            raise HeadTooLarge  # stops the parser; uvicorn's 400 for it finds the refusal made
        self._in_head = False
        self._stale_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progress = True
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        self._began = False
        self._message_ended = self._progress = True  # (before uvicorn's own, which may return early)
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._message_ended = self._progress = False
        super().data_received(data)
        if self.transport.is_closing() or self._pending is not None:
            return
        if self._in_head:
            # Count the read, unless it also ended an earlier (pipelined) request, whose bytes
            # are not this head's: that undercounts by at most one read, so the bound holds
            # within one read, and a request under the limit is never refused.
            if not self._message_ended:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                # Still arriving: its target is whole once a header was read after it (httptools
                # hands a target over in parts, and skips the empty lines before a request).
                self._refuse_too_large(self._request_line() if self.headers else None)
        else:
            # After the head every read of a body moves the parser on; reads that do not are a
            # trailer line (or chunk-size line) that has not ended, which httptools buffers whole.
            self._stale_bytes = 0 if self._progress else self._stale_bytes + len(data)
            if self._stale_bytes > MAX_HEAD_BYTES:
                self._refuse_too_large(None)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse; `msg` is its generic text."""
        if self.transport.is_closing() or self._pending is not None:  # refused already (too large)
            return
        # uvicorn calls this in its `except`: the parser's error says where it stopped. Past the
        # target (in the version, a header), the target was read whole; in it, it was not.
        in_target = isinstance(sys.exc_info()[1], httptools.HttpParserInvalidURLError)
        line = None if in_target else self._request_line()
        self._refuse(400, "malformed_request", "the request is not valid HTTP/1.1 (its request line, a header or the chunked body's framing)", line)

    def on_response_complete(self) -> None:
        if self._pending is not None and not self.pipeline:  # every answer before it is out
            self.server_state.total_requests += 1
            status, code, message, line = self._pending
            self._send(status, code, message, uuid.uuid4().hex, line)
            return
        super().on_response_complete()
        if self._pending is not None:
            self.flow.pause_reading()  # (uvicorn resumed it for the next pipelined request)
        elif self._head_timer is None and not self.transport.is_closing():
            # The next head is timed from now as well: a lone CRLF after an answer cancels
            # uvicorn's keep-alive timer and begins no request, which kept the connection for good.
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._pending is not None:
            return
        if not self._began:  # no request begun (blank lines at most): nobody to answer, as nginx
            if self.cycle is None or self.cycle.response_complete:  # and none being answered
                self.transport.close()
            return
        if not self._in_head:  # its body is being read: the app's timeouts apply
            return
        self._refuse(408, "request_head_timeout", f"the request line and headers did not arrive within {HEAD_TIMEOUT_S:g} s",
                     self._request_line() if self.headers else None)  # fmt: skip

    def _refuse_too_large(self, line: tuple[bytes, bytes] | None) -> None:
        self._refuse(431, "request_head_too_large", f"the request line and headers (or a chunked body's trailer) are over {MAX_HEAD_BYTES // 1024} KiB", line)

    def _refuse(self, status: int, code: str, message: str, line: tuple[bytes, bytes] | None) -> None:
        """Refuse the request being read; `line`, its method and target when read whole, names
        the request-log row of a request refused before routing."""
        in_flight = self.cycle is not None and not self.cycle.response_complete
        line = line if self._in_head else None  # after the head the request is the app's to log
        if in_flight and self._in_head:
            # A pipelined request behind one still being answered: HTTP answers in order, so
            # the refusal waits for that answer (and those queued before it), reading paused.
            self._pending = (status, code, message, line)
            self.flow.pause_reading()
            return
        if in_flight:
            # The request whose body is being read (its framing or trailer refused) keeps its
            # id, under which the app logs it; one refused before routing gets a new one.
            self._send(status, code, message, (self.cycle.scope.get("state") or {}).get("request_id") or uuid.uuid4().hex, None)
        else:
            self._send(status, code, message, uuid.uuid4().hex, line)

    def _request_line(self) -> tuple[bytes, bytes] | None:
        """The request's method and target, for a caller that knows the target was read whole
        (httptools names a method it has not read DELETE, its code 0, beside an empty target)."""
        return (self.parser.get_method(), self.url) if self.url else None

    def _row_scope(self, rid: str, client_rid: str | None, line: tuple[bytes, bytes], app: Any) -> dict[str, Any]:
        """The ASGI scope the app would have seen: the client and scheme as uvicorn's proxy
        headers middleware sets them, when `vigil serve` trusts the proxy (its own rows hash
        the address that middleware gives). ValueError for a target urlsplit cannot read."""
        method, target = line
        url = urlsplit(target.decode("latin-1"))
        scope = {
            "type": "http",
            "method": method.decode("latin-1"),
            "path": unquote(url.path),
            "query_string": url.query.encode("latin-1"),
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "app": app,
            "state": {"request_id": rid, "client_request_id": client_rid},
        }
        if not self.config.proxy_headers:
            return scope
        seen: list[dict[str, Any]] = []

        async def keep(s: dict[str, Any], *_: Any) -> None:
            seen.append(s)

        # The middleware only rewrites the scope and calls `keep`, which returns at once: the
        # coroutine ends on its first step, so it runs here without a loop.
        step = ProxyHeadersMiddleware(keep, trusted_hosts=self.config.forwarded_allow_ips)(scope, None, None)  # type: ignore[arg-type]
        try:
            step.send(None)
        except StopIteration:
            pass
        finally:
            step.close()
        return seen[0] if seen else scope

    def _log_row(self, status: int, code: str, message: str, rid: str, client_rid: str | None, line: tuple[bytes, bytes]) -> None:
        """The request-log row of a prediction request refused before routing (`log_rejection`
        writes rows only for prediction requests, once the service is built)."""
        app = self.app
        while app is not None and not hasattr(app, "state"):  # under uvicorn's wrappers (proxy headers)
            app = getattr(app, "app", None)
        if app is None:  # an app that keeps no request log
            return
        try:
            log_rejection(Request(self._row_scope(rid, client_rid, line, app)), status, code, message)
        except Exception:  # the refusal was sent whatever becomes of its row
            log.exception("the request-log row of HTTP-layer refusal %s could not be written", rid)

    def _send(self, status: int, code: str, message: str, rid: str, line: tuple[bytes, bytes] | None) -> None:
        log.warning("refused by the HTTP layer: %s %s from %s", status, code, self.client, extra={"request_id": rid})
        if self.cycle is not None and not self.cycle.response_complete and not self._in_head:
            client_rid = (self.cycle.scope.get("state") or {}).get("client_request_id")  # the app's request
        else:
            client_rid = client_request_id(self.headers)  # those of its headers that were read
        body = json.dumps(error_body(code, message, rid)).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        headers = [
            *self.server_state.default_headers,  # date and server, as on every uvicorn answer
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"cache-control", b"no-store"),
            # As service/middleware.py answers: the client's own id echoed, else the server's.
            (b"x-request-id", (client_rid or rid).encode()),
            (b"x-vigil-request-id", rid.encode()),
            *HEADERS,
            (b"content-security-policy", CSP.encode()),
        ]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
        if line is not None:  # after the answer: nothing in writing the row can keep it from the client
            self._log_row(status, code, message, rid, client_rid, line)
