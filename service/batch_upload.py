"""Getting many images out of one request: multipart/form-data with repeated `images` fields.

The whole body is bounded while it streams (`read_limited`) and the number of files by
the batch limit: the parser stops at the first file over it, so a request with too many
images costs no more than the limit. An image over the single-image limit is refused in
its own slot by the route (the parser's `max_part_size` bounds text fields only).
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import ApiError, quoted
from service.upload import BodyPace, media_type, parse_form, read_limited

FIELD = "images"


async def batch_images(request: Request, body_limit: int, part_limit: int, max_images: int, pace: BodyPace) -> list[bytes]:
    """The uploaded images' bytes, in the order sent, or an `ApiError` saying what is wrong."""
    ctype = media_type(request)
    if not ctype:  # as /v1/predict names it
        raise ApiError(415, "missing_content_type", f"set Content-Type: multipart/form-data, with one '{FIELD}' field per image")
    if ctype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"send multipart/form-data with one '{FIELD}' field per image, not {quoted(ctype)}")
    body = await read_limited(request, body_limit, pace)
    if not body:
        raise ApiError(400, "empty_body", "the request carries no images")
    too_many = ApiError(413, "too_many_images", f"a batch may carry at most {max_images} images")
    form = await parse_form(request, body, max_images, part_limit, too_many)
    try:
        parts = form.getlist(FIELD)
        stray = sorted({k for k, v in form.multi_items() if k != FIELD and isinstance(v, UploadFile)})
        if not parts:
            found = f"; it has file field {quoted(stray[0])}: name every image's field '{FIELD}'" if stray else ""
            raise ApiError(422, "missing_image_field", f"the multipart body has no file fields named '{FIELD}'{found}")
        if stray:  # answering without them would look like an answer for every image sent
            raise ApiError(422, "unexpected_file_field", f"file field {quoted(stray[0])} is not read; send every image in a '{FIELD}' field")
        texts = [i for i, u in enumerate(parts) if not isinstance(u, UploadFile)]
        if texts:  # skipping them would shift every later result off its part
            raise ApiError(422, "not_a_file", f"'{FIELD}' part {texts[0]} is a text field; send each image as a file part")
        return [await u.read() for u in parts if isinstance(u, UploadFile)]
    finally:
        await form.close()
