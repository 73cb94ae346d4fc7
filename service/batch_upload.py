"""Getting many images out of one request: multipart/form-data with repeated `images` fields.

The whole body is bounded while it streams (`read_limited`), each part by the
single-image limit, and the number of files by the batch limit: the parser stops at
the first file over it, so a request with too many images costs no more than the limit.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service.errors import ApiError
from service.upload import read_limited

FIELD = "images"


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def batch_images(request: Request, body_limit: int, part_limit: int, max_images: int) -> list[bytes]:
    """The uploaded images' bytes, in the order sent, or an `ApiError` saying what is wrong."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"send multipart/form-data with one '{FIELD}' field per image, not {ctype or 'no content type'}")
    body = await read_limited(request, body_limit)
    if not body:
        raise ApiError(400, "empty_body", "the request carries no images")
    parser = MultiPartParser(request.headers, _once(body), max_files=max_images, max_fields=10, max_part_size=part_limit)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if e.message.startswith("Too many files"):
            raise ApiError(413, "too_many_images", f"a batch may carry at most {max_images} images") from e
        raise ApiError(400, "malformed_multipart", f"the multipart body could not be parsed: {e.message}") from e
    try:
        uploads = [u for u in form.getlist(FIELD) if isinstance(u, UploadFile)]
        if not uploads:
            raise ApiError(422, "missing_image_field", f"the multipart body has no file fields named '{FIELD}'")
        return [await u.read() for u in uploads]
    finally:
        await form.close()
