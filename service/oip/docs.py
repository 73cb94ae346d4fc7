"""OpenAPI text for the OIP infer endpoint: its body is parsed by hand (JSON or binary)."""

from __future__ import annotations

from typing import Any

from service.access import ACCESS_ERRORS
from service.oip.binary import HEADER
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

#: Each code the inference route answers 400 and 422 with, and when: the descriptions in /docs
#: are made from these (a test checks every code raised under service/oip/ is listed).
BAD_REQUEST: dict[str, str] = {
    "empty_body": "no body",
    "invalid_json": "a body, or the binary extension's JSON header, that is not JSON",
    "invalid_binary_header": f"an {HEADER} that is not a byte count within the body",
    "invalid_binary_data": "binary sizes that do not add up, or both `data` and `binary_data_size` on one input",
    "invalid_parameter": "a `binary_data_output` or `binary_data` that is not a JSON boolean",
    "unknown_output": "an unknown output name",
    "repeated_output": "an output asked for twice",
    "unsupported_parameter": "Triton's classification extension, which is not served",
}
UNPROCESSABLE: dict[str, str] = {
    "unknown_parameter": "a query parameter other than `version`, the model version, which only the path without `/versions/{version}` takes",
    "unknown_field": "a field the protocol does not define: extensions go in `parameters`",
    "invalid_request": "a field of the wrong type, or text that is not valid Unicode",
    "wrong_input_count": "not exactly one input",
    "unknown_input": "an input not named `input`",
    "unsupported_datatype": "a datatype other than FP32",
    "wrong_shape": "a shape the model does not take",
    "wrong_batch_size": "a batch size outside 1..VIGIL_MAX_BATCH_IMAGES",
    "missing_data": "an input with neither `data` nor `binary_data_size`",
    "invalid_tensor_data": "data that is not numbers, or is not evenly nested",
    "wrong_element_count": "data whose count does not match the shape",
    "non_finite_values": "NaN or infinite values",
    "out_of_range": "values outside [0, 1]",
}


def _listed(reasons: dict[str, str]) -> str:
    """The reasons as one sentence, each followed by its code in backticks."""
    parts = [f"{why} (`{code}`)" for code, why in reasons.items()]
    text = f"{'; '.join(parts[:-1])}; or {parts[-1]}."
    return text[0].upper() + text[1:]


INFER_ERRORS: dict[int | str, dict[str, Any]] = {200: BINARY_OK} | {
    s: {"model": OipError, "description": d}
    for s, d in {
        400: _listed(BAD_REQUEST),
        401: str(ACCESS_ERRORS[401]["description"]),
        404: "No such model (or version) (`unknown_model`).",
        408: "No byte of the body for VIGIL_BODY_IDLE_TIMEOUT_S (`body_timeout`).",
        413: "Body over VIGIL_MAX_BATCH_UPLOAD_BYTES, or its JSON over VIGIL_MAX_JSON_BYTES (`payload_too_large`).",
        415: "A Content-Type other than application/json or application/octet-stream (`unsupported_media_type`; none at all is accepted from clients that send no Origin, as Triton's send none: `missing_content_type` from a browser), or a compressed body (`unsupported_encoding`).",
        422: _listed(UNPROCESSABLE),
        429: str(ACCESS_ERRORS[429]["description"]),
        500: "Inference failed (`inference_error`) or the server erred (`internal_error`); the request is logged: quote its id.",
        503: f"Overloaded: {OVERLOADED_DOC}; the request log or the inference queue is full (`log_backpressure`, `inference_backpressure`), inference timed out (`inference_timeout`) or the inference process is being restarted (`inference_unavailable`); retry after the Retry-After header.",
    }.items()
}
