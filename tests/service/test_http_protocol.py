"""The HTTP protocol `vigil serve` runs: the API's error shape for what uvicorn refuses before
the app runs, and a bound on the request head (service/http_protocol.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from service.http_protocol import MAX_HEAD_BYTES, VigilHttpProtocol
from tests.service.test_uvicorn_process import free_port, until_closed


async def echo_size(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the body's length: a request the protocol let through reached the app whole."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["path"] == "/slow":  # still being answered when the next pipelined request arrives
        await asyncio.sleep(0.3)
    body = json.dumps({"size": size, "path": scope["path"], "headers": len(scope["headers"])}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(echo_size, host="127.0.0.1", port=port, http=VigilHttpProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def exchange(port: int, *chunks: bytes) -> bytes:
    """Send `chunks` (each its own write) and read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(0.02)  # each write its own read on the server
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server refused and closed mid-send: read what it answered
        s.settimeout(1.0)
        got = b""
        try:
            while data := s.recv(65536):
                got += data
        except (TimeoutError, ConnectionResetError):
            pass
    return got


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The (status, headers, body) of each answer in `raw`, in order (bodies by content-length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:size]))
        raw = rest[size:]
    return out


def refusal(raw: bytes, status: int, code: str) -> None:
    ((got, headers, body),) = answers(raw)
    assert got == status and headers["content-type"] == "application/json", raw[:300]
    error = json.loads(body)["error"]
    assert error["code"] == code and error["request_id"] == headers["x-vigil-request-id"] and len(error["request_id"]) == 32
    assert headers["connection"] == "close" and headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["header_without_colon", "request_line", "chunk_size"],
)
def test_a_request_uvicorn_cannot_parse_gets_the_api_error_shape(port: int, request_bytes: bytes) -> None:
    refusal(exchange(port, request_bytes), 400, "malformed_request")


def test_a_head_past_the_bound_is_refused_while_it_is_still_arriving(port: int) -> None:
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    many = [b"GET / HTTP/1.1\r\nHost: a\r\n"] + [line * 8] * (4 * MAX_HEAD_BYTES // len(line * 8))  # 4x the bound, never ending
    refusal(exchange(port, *many), 431, "request_head_too_large")
    # A head that arrives whole, in one read: a long target, or a target and a header each under the bound.
    for target, filler in ((MAX_HEAD_BYTES + 10, 0), (MAX_HEAD_BYTES // 2, MAX_HEAD_BYTES // 2 + 10)):
        one = b"GET /" + b"p" * target + b" HTTP/1.1\r\nHost: a\r\nX-Filler: " + b"a" * filler + b"\r\n\r\n"
        refusal(exchange(port, one), 431, "request_head_too_large")


def test_requests_under_the_bound_pass_whole_even_large_bodies_and_pipelined_ones(port: int) -> None:
    head = b"GET /h HTTP/1.1\r\nHost: a\r\n" + b"X-Filler: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n\r\n"
    ((status, _, body),) = answers(exchange(port, head[:30000], head[30000:]))  # just under, in two writes
    assert status == 200 and json.loads(body)["path"] == "/h"
    upload = 3 * MAX_HEAD_BYTES  # a body well over the head's bound, then a pipelined request in the same write
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % upload + b"x" * upload
    # The pipelined request's head ends only in a later write: the read that ended the upload
    # (often the whole upload) is not that head's, so it must not count against its bound.
    got = answers(exchange(port, post + b"GET /next HTTP/1.1\r\n", b"Host: a\r\nConnection: close\r\n\r\n"))
    assert [(s, json.loads(b)["size"], json.loads(b)["path"]) for s, _, b in got] == [(200, upload, "/up"), (200, 0, "/next")]


class Transport:
    """What the protocol writes, and whether it closed; in place of a socket, so that each
    `data_received` call is exactly one read of the test's choosing."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_write_buffer_limits(self, *_: object) -> None: ...


def test_the_read_that_ends_an_upload_does_not_count_against_the_next_heads_bound() -> None:
    """One read holding the end of a large upload and the start of a pipelined request's head:
    only what comes after it counts. A socket cannot be made to deliver exactly that read."""

    async def run() -> bytes:
        config = uvicorn.Config(echo_size, http=VigilHttpProtocol, log_config=None, lifespan="off")
        protocol = VigilHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        upload = 3 * MAX_HEAD_BYTES
        post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % upload + b"x" * upload
        protocol.data_received(post + b"GET /next HTTP/1.1\r\n")
        protocol.data_received(b"Host: a\r\n\r\n")
        for _ in range(100):
            if transport.written.count(b"HTTP/1.1 ") == 2 or transport.closed:
                break
            await asyncio.sleep(0.01)
        return transport.written

    got = answers(asyncio.run(run()))
    assert [(s, json.loads(b)["path"]) for s, _, b in got] == [(200, "/up"), (200, "/next")]


def test_the_bound_counts_a_head_alike_in_one_read_or_many(port: int) -> None:
    """The count over reads (raw bytes) and the count of a head that came whole (its parsed
    fields) are the same count: how TCP cut the head must not decide the answer."""
    for n, status in ((5000, 431), (4000, 200)):  # 5000 x 14 bytes is over 64 KiB, 4000 x 14 under
        head = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + b"".join(b"h%05d: 1234\r\n" % i for i in range(n)) + b"\r\n"
        whole = answers(exchange(port, head))
        pieces = answers(exchange(port, *[head[i : i + 8000] for i in range(0, len(head), 8000)]))
        assert [a[0] for a in whole] == [a[0] for a in pieces] == [status], (n, len(head))


def test_a_chunked_bodys_trailer_counts_against_the_bound_and_never_reaches_the_app(port: int) -> None:
    start = b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
    ok = answers(exchange(port, start + b"X-Trailer: 1\r\n\r\n"))
    assert [(s, json.loads(b)["size"], json.loads(b)["headers"]) for s, _, b in ok] == [(200, 5, 2)]  # host, transfer-encoding
    many = [start] + [b"".join(b"t%05d: %s\r\n" % (i, b"v" * 100) for i in range(k, k + 100)) for k in range(0, 1000, 100)]
    refusal(exchange(port, *many), 431, "request_head_too_large")  # 1,000 trailer lines of ~110 bytes
    endless = [start, b"X-Trailer: "] + [b"v" * 8192] * 16  # one trailer value that never ends
    refusal(exchange(port, *endless), 431, "request_head_too_large")


def test_a_pipelined_refusal_waits_for_the_answer_before_it(port: int) -> None:
    """HTTP answers in order: the refusal of the second request comes after the first's
    answer, which used to be lost (the refusal went out in its place and closed the line)."""
    slow = b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    for bad, status, code in (
        (b"GET /big HTTP/1.1\r\nHost: a\r\nX-Filler: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", 431, "request_head_too_large"),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, "malformed_request"),
    ):
        first, second = answers(exchange(port, slow + bad))
        assert (first[0], json.loads(first[2])["path"]) == (200, "/slow")
        refusal(exchange_answer(second), status, code)


def exchange_answer(answer: tuple[int, dict[str, str], bytes]) -> bytes:
    """One parsed answer back in wire form, for `refusal`."""
    status, headers, body = answer
    return b"HTTP/1.1 %d X\r\n" % status + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body



@pytest.mark.parametrize(
    ("reads", "line"),
    [
        # The target still arriving at the bound: it could be any path, so no row is written.
        ([b"POST /v1/predict", b"x" * MAX_HEAD_BYTES], None),
        ([b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nX-Pad: ", b"p" * MAX_HEAD_BYTES], (b"POST", b"/v1/predict")),
        ([b"POST /v1/predict?a=1 HTTP/1.1\r\nno colon\r\n\r\n"], (b"POST", b"/v1/predict?a=1")),
        ([b"POST /v1/pre", b"dict HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n"], (b"POST", b"/v1/predict")),
        ([b"\x01\r\n\r\n"], None),  # no method, no target
        # A target refused part-way, or still arriving behind empty lines: no row for the part
        # (a byte count once logged /v1/predict for /v1/predict/batch\x01).
        ([b"POST /v1/predict", b"/batch\x01 HTTP/1.1\r\nHost: a\r\n\r\n"], None),
        ([b"POST /v1/predict", b"\x01"], None),
        ([b"\r\n" * 33_000 + b"POST /v1/predict"], None),
        ([b"POST /v1/predict HTTP/1.1 extra\r\n\r\n"], (b"POST", b"/v1/predict")),
    ],
)
def test_a_refusal_before_routing_names_a_request_line_only_once_it_was_read_whole(
    monkeypatch: pytest.MonkeyPatch, reads: list[bytes], line: tuple[bytes, bytes] | None
) -> None:
    """What the refusal's request-log row is written under (`_log_row`, given the line)."""
    given: list[tuple[bytes, bytes] | None] = []
    monkeypatch.setattr(VigilHttpProtocol, "_log_row", lambda self, *args: given.append(args[-1]))

    async def run() -> Transport:  # the protocol is made on a running loop, as uvicorn makes it
        config = uvicorn.Config(echo_size, http=VigilHttpProtocol, log_config=None, lifespan="off")
        protocol = VigilHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for data in reads:
            protocol.data_received(data)
        return transport

    transport = asyncio.run(run())
    assert transport.closed and transport.written.count(b"HTTP/1.1 4") == 1
    assert given == ([] if line is None else [line])


def test_a_refusal_before_routing_is_logged_as_the_app_would_see_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a trusted proxy the row's client is the one X-Forwarded-For names, as uvicorn's
    middleware gives the app; the client's own X-Request-ID is kept and echoed; and a target
    urlsplit cannot read still gets its answer (it raised out of the protocol: no answer)."""
    from starlette.applications import Starlette
    from starlette.requests import Request

    logged: list[Request] = []
    monkeypatch.setattr("service.http_protocol.log_rejection", lambda request, *args: logged.append(request))

    async def run(request: bytes) -> bytes:
        config = uvicorn.Config(Starlette(), http=VigilHttpProtocol, log_config=None, lifespan="off", proxy_headers=True, forwarded_allow_ips="127.0.0.1")
        protocol = VigilHttpProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()  # its peer is 127.0.0.1, the trusted proxy
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(request)
        return transport.written

    # (httptools hands a header over when the next one begins: the one before the bad line is lost)
    head = b"POST /v1/predict HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\nX-Request-ID: client-id-1234\r\nAccept: */*\r\n"
    written = asyncio.run(run(head + b"Bad Header\r\n\r\n"))
    assert [(s, json.loads(b)["error"]["code"]) for s, _, b in answers(written)] == [(400, "malformed_request")]
    assert b"x-request-id: client-id-1234\r\n" in written.lower() and b"content-security-policy: " in written.lower()
    [request] = logged
    assert (request.client.host if request.client else None, request.state.client_request_id) == ("203.0.113.9", "client-id-1234")
    assert (request.method, request.url.path, request.state.request_id) == ("POST", "/v1/predict", json.loads(answers(written)[0][2])["error"]["request_id"])
    written = asyncio.run(run(b"POST http://[x/v1/predict HTTP/1.1\r\nHost: a\r\nX-Bad: \x01\r\n\r\n"))
    assert [s for s, _, _ in answers(written)] == [400] and len(logged) == 1


def test_a_head_that_does_not_arrive_in_time_is_refused_and_a_silent_connection_closed(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn set no bound: a connection that sent nothing, or a header line now and then,
    stayed open for good (slowloris), each holding a file descriptor."""
    monkeypatch.setattr("service.http_protocol.HEAD_TIMEOUT_S", 0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # sends nothing
        started = time.monotonic()
        assert s.recv(100) == b"" and time.monotonic() - started < 3  # closed, with nothing to answer
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # a head that never ends
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: a\r\n")
        got = until_closed(s)
    refusal(got, 408, "request_head_timeout")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # blank lines, which begin no request
        s.sendall(b"\r\n\r\n")
        assert s.recv(100) == b""
    # Only the head is timed: a body slower than it, and a second request on the connection
    # whose head is prompt, pass; a second request's head that stalls is refused in turn.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(1.0)
        s.sendall(b"cd")
        time.sleep(0.2)  # the next head is timed from the answer before it
        s.sendall(b"GET /b HTTP/1.1\r\nHost: a\r\n")
        got = until_closed(s)
    first, second = answers(got)
    assert first[0] == 200 and json.loads(first[2])["size"] == 4 and second[0] == 408
    # A lone CRLF after an answer cancels uvicorn's keep-alive timer and begins no request: the
    # connection is still closed once the head timeout passes.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)
        s.sendall(b"\r\n")
        started = time.monotonic()
        got = until_closed(s)
    assert [a[0] for a in answers(got)] == [200] and time.monotonic() - started < 3
