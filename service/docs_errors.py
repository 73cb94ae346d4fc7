"""One real error example per documented error status in /docs, instead of one for all.

The shared error schema carries a single example (`not_an_image`), so every 4xx and 5xx
of every operation showed it, a 401 and a 503 included. Here each (operation, status) gets
the error that operation really answers with that status; the codes and messages are the
service's own (a test checks each code is one the service raises).
"""

from __future__ import annotations

from typing import Any

from service.auth import ADMIN_KEY_REQUIRED
from service.errors import error_body
from service.schemas import EXAMPLE_ERROR_ID

#: Per status, the most common answer (code, message).
BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("empty_body", "the request carries no image bytes"),
    401: ("unauthorized", "an API key is required (Authorization: Bearer <key> or X-API-Key)"),
    403: ("admin_disabled", "no admin keys are configured (set VIGIL_ADMIN_API_KEYS)"),
    404: ("unknown_request", "no logged request with id 'nope'"),
    408: ("body_timeout", "no part of the request body arrived for 10 s (VIGIL_BODY_IDLE_TIMEOUT_S)"),
    409: ("no_prediction", f"request '{EXAMPLE_ERROR_ID}' was refused, so it has no prediction to label"),
    413: ("payload_too_large", "the request body is 25.8 MiB; the limit is 5 MiB (5242880 bytes)"),
    415: ("not_an_image", "the body is not a recognised image; accepted formats: BMP, GIF, JPEG, PNG, TIFF, WEBP"),
    422: ("invalid_request", "query.limit: Input should be less than or equal to 500"),
    429: ("rate_limited", "too many requests for this client; retry in 1 s"),
    500: ("inference_error", "inference failed for the batch this input was in; quote the request id"),
    503: ("inference_backpressure", "too many requests are waiting for inference; retry shortly"),
}

#: GET endpoints behind the admin key (the last two with VIGIL_METRICS_ADMIN_ONLY): their 401.
ADMIN_PATHS = ("/v1/requests", "/v1/requests/{request_id}", "/v1/reports/summary", "/v1/monitor", "/metrics")

#: Where an operation's answer for a status differs from `BY_STATUS`: (method, path, status).
#: (The database routes' 503 example comes with their declaration, service.dbcalls.DB_ERRORS.)
BY_OPERATION: dict[tuple[str, str, int], tuple[str, str]] = {
    ("post", "/v1/predict", 422): ("corrupt_image", "the image could not be decoded: image file is truncated"),
    ("post", "/v1/predict/batch", 413): ("too_many_images", "a batch may carry at most 64 images"),
    ("post", "/v1/predict/batch", 415): ("unsupported_media_type", "send multipart/form-data with one 'images' field per image, not 'image/png'"),
    ("post", "/v1/predict/batch", 422): ("missing_image_field", "the multipart body has no file fields named 'images'"),
    ("post", "/v1/predict/batch", 400): ("malformed_multipart", "the multipart body ends before its closing boundary (truncated upload?)"),
    ("get", "/v1/models/{name}", 404): ("unknown_model", "no model named 'nope'; served: 'mnist-default'"),
    ("get", "/v1/requests", 400): ("invalid_cursor", "cursor is not one this service handed out"),
    ("get", "/v1/requests", 422): ("unknown_parameter", "unknown query parameter 'decison'; this endpoint takes: cursor, decision, flagged, has_feedback, limit, model, since, until"),
    ("get", "/v1/requests/{request_id}", 404): ("unknown_request", "no logged request with this id"),
    **{("get", path, 401): ("unauthorized", ADMIN_KEY_REQUIRED) for path in ADMIN_PATHS},
    ("get", "/v1/reports/summary", 422): ("invalid_window", "since must be before until"),
    ("post", "/v1/requests/{request_id}/feedback", 422): ("invalid_label", "label must be a class index from 0 to 9, got 10"),
    ("post", "/v1/requests/{request_id}/feedback", 400): ("empty_body", "the request has no body; send a JSON object"),
    ("post", "/v1/requests/{request_id}/feedback", 415): ("unsupported_media_type", "send the feedback as application/json, not 'text/plain'"),
    ("post", "/v1/requests/{request_id}/feedback", 413): ("payload_too_large", "the request body exceeds the limit; the limit is 2 MiB (2097152 bytes)"),
    ("get", "/v2/models/{name}", 404): ("unknown_model", "no model named 'nope'; served: 'mnist-default' version '3'"),
    ("get", "/v2/models/{name}/ready", 404): ("unknown_model", "no model named 'nope'; served: 'mnist-default' version '3'"),
    ("post", "/v2/models/{name}/infer", 400): ("invalid_json", "the request body is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("post", "/v2/models/{name}/infer", 404): ("unknown_model", "no model named 'nope'; served: 'mnist-default' version '3'"),
    ("post", "/v2/models/{name}/infer", 415): ("unsupported_encoding", "compressed request bodies are not accepted"),
    ("post", "/v2/models/{name}/infer", 500): ("inference_error", "inference failed for the batch this input was in; quote the request id"),
    ("post", "/v2/models/{name}/infer", 422): ("wrong_shape", "input shape [1, 3, 28, 28] does not match [-1, 1, 28, 28] or [-1, 28, 28] (-1: batch)"),
}


def error_example(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The example body for this operation's `status`, in its shape (OIP's flat one on /v2)."""
    found = BY_OPERATION.get((method, path, status)) or BY_STATUS.get(status)
    if found is None:
        return None
    return example_body(path, *found)


def example_body(path: str, code: str, message: str) -> dict[str, Any]:
    """An error example in the path's shape (OIP's flat one on /v2)."""
    if path.startswith("/v2"):
        return {"error": message, "code": code, "request_id": EXAMPLE_ERROR_ID}
    return error_body(code, message, EXAMPLE_ERROR_ID)
