"""An OIP request -> validated pixels ``[N, C, H, W]`` in [0, 1], or a 4xx saying why not.

The accepted shape comes from the bundle's input spec (DESIGN.md: nothing assumes 28x28),
with the channel axis optional for one-channel models.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import ValidationError

from models.manifest import InputSpec
from service.errors import ApiError, quoted
from service.oip.binary import split_body, take_chunks
from service.oip.schemas import InferRequest, RequestInput
from service.oip.validation import client_message


def parse_request(
    body: bytes, header_length: str | None, max_json: int, binary: bool = False
) -> tuple[InferRequest, list[bytes | None]]:
    """The JSON header as a request, and each input's binary chunk (None when sent as JSON).
    `binary`: the body was sent as application/octet-stream (Triton's binary extension).

    The JSON part is capped at `max_json` bytes whatever the content type: only JSON bodies
    met that cap, so 32 MiB of JSON sent as octet-stream took seconds to parse.
    """
    if not body:
        raise ApiError(400, "empty_body", "the request carries no inference request")
    head, blob = split_body(body, header_length)
    if len(head) > max_json:
        raise ApiError(413, "payload_too_large", f"the request's JSON is {len(head)} bytes; the limit is {max_json} (VIGIL_MAX_JSON_BYTES): send large inputs as binary tensor data")
    try:
        # json.loads accepts NaN and Infinity tokens: they are refused below, with a clear code.
        doc = json.loads(head)
    except (ValueError, RecursionError) as e:
        # ValueError: JSONDecodeError, UnicodeDecodeError, and an integer of over 4,300 digits;
        # RecursionError: deeply nested arrays (issue 8). Said in the client's terms: a plain
        # JSON request has no "header", and an octet-stream body without the header's length is
        # most likely tensor data that was meant to follow one.
        what = "the request body" if header_length is None else f"the JSON header (the first {len(head)} bytes, by Inference-Header-Content-Length)"
        if isinstance(e, RecursionError):
            why = "it is nested too deeply"
        elif binary and header_length is None:
            why = f"{e}; binary tensor data needs the Inference-Header-Content-Length header, the length of the JSON before it"
        else:
            why = str(e)
        raise ApiError(400, "invalid_json", f"{what} is not JSON: {why}") from e
    try:
        req = InferRequest.model_validate(doc)
    except ValidationError as e:
        code = "unknown_field" if e.errors()[0]["type"] == "extra_forbidden" else "invalid_request"
        raise ApiError(422, code, client_message(e.errors(), doc)) from e
    sizes = [_binary_size(t) for t in req.inputs]
    return req, take_chunks(sizes, blob)


def _binary_size(t: RequestInput) -> int | None:
    size = (t.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int):
        raise ApiError(
            400,
            "invalid_binary_data",
            f"input {t.name!r}: binary_data_size must be an integer",
        )
    return size


#: The model's one input tensor, as the metadata endpoint names it.
INPUT_NAME = "input"


def accepted_shapes(spec: InputSpec) -> list[list[int]]:
    full = [-1, spec.channels, spec.height, spec.width]
    return [full, [-1, spec.height, spec.width]] if spec.channels == 1 else [full]


def to_pixels(
    req: InferRequest, chunks: list[bytes | None], spec: InputSpec, max_batch: int
) -> np.ndarray:
    if len(req.inputs) != 1:
        raise ApiError(
            422,
            "wrong_input_count",
            f"the model takes exactly one input tensor, got {len(req.inputs)}",
        )
    t, chunk = req.inputs[0], chunks[0]
    if t.name != INPUT_NAME:  # as Triton does: a misnamed tensor is a client's mix-up, not a pass
        raise ApiError(
            422,
            "unknown_input",
            f"the model's input is named {INPUT_NAME!r}, got {quoted(t.name)}",
        )
    if chunk is not None and t.data is not None:
        raise ApiError(
            400,
            "invalid_binary_data",
            f"input {quoted(t.name)} has both data and binary_data_size; send one",
        )
    if t.datatype != "FP32":
        raise ApiError(
            422,
            "unsupported_datatype",
            f"input {t.name!r} must be FP32 (pixels in [0, 1]), got {t.datatype!r}",
        )
    shapes = accepted_shapes(spec)
    if not any(
        len(t.shape) == len(s)
        and all(a == b or b == -1 for a, b in zip(t.shape, s, strict=True))
        for s in shapes
    ):
        raise ApiError(
            422,
            "wrong_shape",
            f"input shape {t.shape} does not match {' or '.join(map(str, shapes))} (-1: batch)",
        )
    n = t.shape[0]
    if not 1 <= n <= max_batch:
        raise ApiError(
            422, "wrong_batch_size", f"batch size {n} is outside 1..{max_batch}"
        )
    count = int(np.prod(t.shape))
    if chunk is not None:
        if len(chunk) != 4 * count:
            raise ApiError(
                400,
                "invalid_binary_data",
                f"binary input holds {len(chunk)} bytes; shape {t.shape} needs {4 * count}",
            )
        arr = np.frombuffer(chunk, dtype="<f4").astype(np.float32)
    else:
        arr = _from_json(t, count)
    if not np.isfinite(arr).all():
        raise ApiError(422, "non_finite_values", _non_finite(t.name, binary=chunk is not None))
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ApiError(
            422,
            "out_of_range",
            "pixel values must lie in [0, 1] (the server normalises them)",
        )
    return arr.reshape(n, spec.channels, spec.height, spec.width)


def _non_finite(name: str, binary: bool) -> str:
    """The refusal of NaN or infinite pixels, in the terms of the way they were sent: binary
    tensor data holds them as such, while JSON has no such numbers (json.loads takes NaN and
    Infinity, and a number beyond FP32's range becomes infinite when converted)."""
    if binary:
        return f"the binary tensor data of input {quoted(name)} contains NaN or infinite FP32 values"
    return "the input contains NaN or infinite values (a JSON number beyond FP32's range, about ±3.4e38, is infinite in FP32)"


def _from_json(t: RequestInput, count: int) -> np.ndarray:
    if t.data is None:
        raise ApiError(
            422,
            "missing_data",
            f"input {t.name!r} has neither data nor binary_data_size",
        )
    try:
        arr: np.ndarray | None = np.asarray(t.data).reshape(-1)
    except (ValueError, TypeError):
        arr = None  # ragged nesting
    # Only real numbers: numpy would otherwise turn "0.5" or true into a pixel silently.
    if arr is None or arr.dtype.kind not in "fiu":
        raise ApiError(
            422,
            "invalid_tensor_data",
            f"input {t.name!r}: data must be numbers, flat or evenly nested",
        )
    if arr.size != count:
        raise ApiError(
            422,
            "wrong_element_count",
            f"input {t.name!r} has {arr.size} values; shape {t.shape} needs {count}",
        )
    return arr.astype(np.float32)
