"""OpenAPI text for the OIP infer endpoint: its body is parsed by hand (JSON or binary)."""

from __future__ import annotations

from typing import Any

from service.access import ACCESS_ERRORS
from service.oip.schemas import InferRequest, OipError
from service.shedding import OVERLOADED_DOC


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace pydantic's local `$defs` references: OpenAPI resolves `#/...` against the whole document."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


EXAMPLE = {
    "id": "my-call-1",
    "inputs": [
        {
            "name": "input",
            "shape": [1, 1, 28, 28],
            "datatype": "FP32",
            "data": [0.0] * 784,
        }
    ],
    "outputs": [
        {"name": "probabilities"},
        {"name": "decision"},
        {"name": "request_id"},
    ],
}

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON, or Triton's binary extension (application/octet-stream): a JSON header "
        "whose length is in Inference-Header-Content-Length, then the raw tensors.",
        "content": {
            "application/json": {
                "schema": _inline(InferRequest.model_json_schema()),
                "example": EXAMPLE,
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }
}

BINARY_OK = {
    "description": "Outputs as JSON, or with any output asked for as binary (Triton's extension): JSON header, then raw tensors.",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    },
}

INFER_ERRORS: dict[int | str, dict[str, Any]] = {200: BINARY_OK} | {
    s: {"model": OipError, "description": d}
    for s, d in {
        400: "Not JSON, bad binary sizes, both `data` and `binary_data_size` on one input, an unknown output name (`unknown_output`), an output asked for twice (`repeated_output`), or Triton's classification extension (`unsupported_parameter`: not served).",
        401: str(ACCESS_ERRORS[401]["description"]),
        404: "No such model (or version).",
        408: "No byte of the body for VIGIL_BODY_IDLE_TIMEOUT_S (`body_timeout`).",
        413: "Body over VIGIL_MAX_BATCH_UPLOAD_BYTES, or its JSON over VIGIL_MAX_JSON_BYTES.",
        415: "A Content-Type other than application/json or application/octet-stream (`unsupported_media_type`; none at all is accepted from clients that send no Origin, as Triton's send none: `missing_content_type` from a browser), or a compressed body (Content-Encoding).",
        422: "A query parameter it does not take (`unknown_parameter`: only `version`, the model version, without `/versions/{version}` in the path); wrong input count, name (must be `input`), datatype (must be FP32), shape, or batch size (over VIGIL_MAX_BATCH_IMAGES); non-numeric, NaN/Inf or out-of-[0,1] values; text that is not valid Unicode.",
        429: str(ACCESS_ERRORS[429]["description"]),
        500: "Inference failed (`inference_error`) or the server erred (`internal_error`); the request is logged: quote its id.",
        503: f"Overloaded: {OVERLOADED_DOC}; the request log or the inference queue is full (`log_backpressure`, `inference_backpressure`), inference timed out (`inference_timeout`) or the inference process is being restarted (`inference_unavailable`); retry after the Retry-After header.",
    }.items()
}
