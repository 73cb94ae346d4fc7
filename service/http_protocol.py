"""uvicorn's HTTP protocol, with Vigil's answers to the requests it refuses before the app runs.

uvicorn's httptools protocol answers a request it cannot parse (a bad request line, a header
without a colon, a bad chunk size) with a text/plain 400 of its own. A client expecting the
API's one error shape got a line of prose instead, with no request id to quote. It also reads
a request line and headers of any length into memory: unlike its h11 protocol, it has no
limit, so one connection could make the process buffer megabytes of headers.

`VigilHttpProtocol` answers both with the error shape (service/errors.py), the request id
header and the security headers:
- 400 `malformed_request` where uvicorn answered text/plain;
- 431 `request_head_too_large` when a request's target and headers pass `MAX_HEAD_BYTES`,
  as nginx does beyond its header buffers: as soon as that much arrived without the head
  ending, or when a head that arrived at once ends (uvicorn answered a target over 64 KiB
  with its text/plain 400, since its URL parser's offsets are 16-bit).
Each refusal is one warning in the service log, with its request id and client. Such a
request has no method or route that could be trusted, so it gets no request-log row; the
compose nginx refuses these with its own 400 before they reach the service.
"""

from __future__ import annotations

import json
import logging
import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body
from service.security_headers import HEADERS

log = logging.getLogger("vigil.http")

#: The most bytes a request line and its headers may take. nginx's default
#: (large_client_header_buffers 4 8k) refuses a header line over 8 KiB; 64 KiB in all leaves
#: room for long cookies and tokens, and bounds what a connection can make the process hold.
MAX_HEAD_BYTES = 64 * 1024

REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a request already refused."""


class VigilHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds the request head and refuses in the API's error shape."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def, override]  # uvicorn's signature
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True  # until the first request's headers are complete
        self._message_ended = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        # A head that arrived whole within a read was never counted in `data_received`.
        if len(self.url) + sum(len(name) + len(value) for name, value in self.headers) > MAX_HEAD_BYTES:
            self._refuse_too_large()
            raise HeadTooLarge  # stops the parser; uvicorn's 400 for it finds the connection closed
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        self._message_ended = True  # (before uvicorn's own, which may return early)
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._message_ended = False
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Still inside a head: count the chunk, unless it also ended an earlier (pipelined)
        # request, whose bytes are not this head's. That undercounts by at most one chunk, so
        # the bound holds within one read, and a request under the limit is never refused.
        if not self._message_ended:
            self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_too_large()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse; `msg` is its generic text."""
        if self.transport.is_closing():  # refused already (a head too large)
            return
        self._refuse(400, "malformed_request", "the request is not valid HTTP/1.1 (its request line, a header or the chunked body's framing)")

    def _refuse_too_large(self) -> None:
        self._refuse(431, "request_head_too_large", f"the request line and headers are over {MAX_HEAD_BYTES // 1024} KiB")

    def _refuse(self, status: int, code: str, message: str) -> None:
        rid = uuid.uuid4().hex
        log.warning("refused before routing: %s %s from %s", status, code, self.client, extra={"request_id": rid})
        body = json.dumps(error_body(code, message, rid)).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
        headers = [
            *self.server_state.default_headers,  # date and server, as on every uvicorn answer
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"cache-control", b"no-store"),
            (b"x-vigil-request-id", rid.encode()),
            *HEADERS,
        ]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
