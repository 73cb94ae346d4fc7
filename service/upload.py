"""Getting the image bytes out of a request: multipart field `image`, or a raw `image/*` body.

The body is read as a stream and refused (413) as soon as it passes the size limit, so
an oversized upload is never held in memory whole.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import anyio
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service.body_limit import byte_count, too_large
from service.errors import ApiError, quoted
from service.settings import Settings


@dataclass(frozen=True)
class BodyPace:
    """How slowly a body may arrive: `idle_s` without a byte, and, after the first `idle_s`,
    at least `min_rate` bytes per second on average (0: no minimum)."""

    idle_s: float
    min_rate: int

    @classmethod
    def of(cls, settings: Settings) -> BodyPace:
        return cls(settings.body_idle_timeout_s, settings.body_min_rate_bps)


async def _chunks(request: Request, pace: BodyPace) -> AsyncGenerator[bytes, None]:
    """The body's chunks; 408 when none comes for `pace.idle_s` (nginx's client_body_timeout),
    or when they come slower than `pace.min_rate` on average after the first `pace.idle_s`.

    uvicorn waits for a body without end, and a prediction holds one of VIGIL_MAX_INFLIGHT's
    slots while it waits: 64 connections that sent their headers and went quiet refused
    every other prediction (503 overloaded) for as long as they stayed open. The idle timeout
    alone did not stop one byte every 8 s, which held the slots as long (Kestrel's and
    Apache's minimum data rates answer the same trickle).
    """
    stream = request.stream().__aiter__()
    start, received = anyio.current_time(), 0
    while True:
        wait = pace.idle_s
        if pace.min_rate:  # when the next byte is due, by the average rate
            wait = min(wait, max(0.0, start + pace.idle_s + (received + 1) / pace.min_rate - anyio.current_time()))
        with anyio.move_on_after(wait) as waited:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                return
        if waited.cancelled_caught and wait < pace.idle_s:
            raise ApiError(408, "body_timeout", f"the request body arrived slower than {pace.min_rate} bytes/s (VIGIL_BODY_MIN_RATE_BPS)")
        if waited.cancelled_caught:
            raise ApiError(408, "body_timeout", f"no part of the request body arrived for {pace.idle_s:g} s (VIGIL_BODY_IDLE_TIMEOUT_S)")
        received += len(chunk)
        yield chunk


async def read_body(request: Request, pace: BodyPace) -> bytes:
    """The whole body, with the uploads' 408 when it stalls. No limit of its own: for a JSON
    body BodyLimitMiddleware's cap (413) applies while it streams in."""
    return b"".join([chunk async for chunk in _chunks(request, pace)])


async def read_limited(request: Request, limit: int, pace: BodyPace) -> bytes:
    declared = byte_count(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise ApiError(413, "payload_too_large", too_large("the request body", declared, limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in _chunks(request, pace):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", too_large("the request body", None, limit))
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def media_type(request: Request) -> str:
    """The request's media type, lower case and without parameters; "" when it sends none."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _require_closed(request: Request, body: bytes) -> None:
    """400 unless the multipart body ends with its close delimiter (RFC 2046, Sec. 5.1.1).

    Starlette's parser accepts a body cut off mid-part and returns the parts it completed,
    so a truncated upload would silently lose its last images (or answer "no field named
    'image'", which misleads). A body without a boundary parameter is left to the parser,
    which refuses it by name.
    """
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if boundary and not (body.startswith(b"--" + boundary + b"--") or b"\r\n--" + boundary + b"--" in body):
        raise ApiError(400, "malformed_multipart", "the multipart body ends before its closing boundary (truncated upload?)")


def _without_preamble(request: Request, body: bytes) -> bytes:
    """The body from its first delimiter on. RFC 2046 (Sec. 5.1.1) lets text precede it, which
    the parser refuses ("Invalid multipart data"); a body without one is left as it is."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary or body.startswith(b"--" + boundary):
        return body
    first = body.find(b"\r\n--" + boundary)
    return body[first + 2 :] if first >= 0 else body


async def parse_form(request: Request, body: bytes, max_files: int, part_limit: int, too_many: ApiError | None = None) -> FormData:
    """A multipart body read whole, parsed; 400 `malformed_multipart` when it is not one, or
    `too_many` (if given) when it carries more than `max_files` files. The caller closes it."""
    _require_closed(request, body)
    body = _without_preamble(request, body)
    parser = MultiPartParser(request.headers, _once(body), max_files=max_files, max_fields=10, max_part_size=part_limit)
    try:
        return await parser.parse()
    except MultiPartException as e:
        if too_many is not None and e.message.startswith("Too many files"):
            raise too_many from e
        raise ApiError(400, "malformed_multipart", f"the multipart body could not be parsed: {e.message}") from e


async def image_bytes(request: Request, limit: int, pace: BodyPace) -> bytes:
    """The uploaded image's bytes, or an `ApiError` saying what is wrong with the request."""
    ctype = media_type(request)
    if not ctype:
        raise ApiError(415, "missing_content_type", "set Content-Type: multipart/form-data (field 'image') or image/*")
    if not (ctype == "multipart/form-data" or ctype.startswith("image/")):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {quoted(ctype)} is not accepted; use multipart/form-data or image/*")
    body = await read_limited(request, limit, pace)
    if ctype.startswith("image/"):
        return body
    if not body:
        raise ApiError(400, "empty_body", "the request carries no image bytes")
    one_file = ApiError(422, "unexpected_file_field", "send one file, in the field 'image'; several images go to /v1/predict/batch, one 'images' field each")
    form = await parse_form(request, body, max_files=1, part_limit=limit, too_many=one_file)
    try:
        upload = form.get("image")
        if isinstance(upload, str):  # a part without a filename: `curl -F 'image=<f'` sends one
            raise ApiError(422, "not_a_file", "the 'image' part is a text field (it has no filename); send the image as a file part: curl -F image=@digit.png")
        if upload is None:
            other = next((k for k, v in form.multi_items() if not isinstance(v, str)), None)
            found = f"; it has file field {other[:40]!r}: name it 'image' (several images go to /v1/predict/batch)" if other else ""
            raise ApiError(422, "missing_image_field", f"the multipart body has no file field named 'image'{found}")
        return await upload.read()
    finally:
        await form.close()
