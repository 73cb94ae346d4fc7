"""POST /v1/predict/batch: up to N images in one request, one result and one log record each.

Per-item errors: an image that is refused (empty, too large, not an image, a format or mode
not accepted, corrupt) gets `{status, error}` in its slot
and the rest of the batch is still classified (one bad scan should not cost a client
the other 63). Errors of the request as a whole (content type, body size, too many
images) are answered with the usual error shape and logged as one record. All
decodable images of a request go to the runtime as one job, so they share batches.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import torch
from fastapi import APIRouter, Request

from models.pipeline import PipelineOutput
from service.access import ACCESS_ERRORS, ClientDep, charge_images
from service.batch_schemas import BatchItemError, BatchPredictionPublic
from service.batch_upload import FIELD, batch_images
from service.body_limit import too_large
from service.context import AppContext, CtxDep
from service.errors import ApiError
from service.query_params import reject_unknown_query
from service.records import base_record, error_fields, input_fields, item_id
from service.rejections import mark_logged
from service.respond import build_prediction, log_fields
from service.routes.predict import _decode, submit
from service.schemas import (
    ErrorDetail,
    PredictionPublic,
    error_responses,
)
from service.shedding import OVERLOADED_DOC
from service.upload import BodyPace

router = APIRouter(tags=["predict"])
ENDPOINT = "/v1/predict/batch"

ERRORS = error_responses(
    {
        400: "Empty body or malformed multipart.",
        408: "No byte of the upload for VIGIL_BODY_IDLE_TIMEOUT_S (`body_timeout`).",
        413: "More images than the batch limit (`too_many_images`), or a body or image over the size limit.",
        415: "Not multipart/form-data, or a compressed body (`unsupported_encoding`).",
        422: "No file fields named 'images' (`missing_image_field`), a file in a field of another name (`unexpected_file_field`), a text part named 'images' (`not_a_file`), or a query parameter (`unknown_parameter`: this endpoint takes none).",
        500: "Inference failed for the batch (`inference_error`); every image is logged: quote the request id.",
        503: f"Overloaded: {OVERLOADED_DOC}; inference or the request log is saturated (`inference_backpressure`, `log_backpressure`), "
        "inference timed out (`inference_timeout`), or the inference process is being restarted (`inference_unavailable`); "
        "retry after Retry-After.",
    }
)

BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}},
                },
                "encoding": {FIELD: {"contentType": "image/*"}},
            }
        },
    }
}

Decoded = tuple[torch.Tensor, dict[str, Any]] | ApiError


def _decode_all(ctx: AppContext, parts: list[bytes]) -> list[Decoded]:
    out: list[Decoded] = []
    limit = ctx.settings.max_upload_bytes  # what /v1/predict takes for one image
    for data in parts:
        try:
            if len(data) > limit:
                raise ApiError(413, "payload_too_large", too_large("the image", len(data), limit))
            out.append(_decode(ctx, data))
        except ApiError as e:
            out.append(e)
    return out


def _item_record(request: Request, ctx: AppContext, i: int, data: bytes, fields: dict[str, Any] | None) -> dict[str, Any]:
    record = base_record(request, ctx.bundle.manifest, ctx.settings.client_id_salt, ENDPOINT)
    record["request_id"] = item_id(request.state.request_id, i)
    record.update(fields if fields is not None else input_fields(data))
    return record


def _log_error(ctx: AppContext, record: dict[str, Any], e: ApiError, start: float) -> None:
    submit(ctx, record | error_fields(e, start))


def _ensure_log_room(ctx: AppContext, n: int) -> None:
    # Refuse before inference rather than half-log a batch whose records do not fit.
    if ctx.writer.queue.maxsize - ctx.writer.depth() < n:
        raise ApiError(503, "log_backpressure", "the request log is saturated; retry shortly", {"Retry-After": "1"})


@router.post(
    ENDPOINT,
    response_model=BatchPredictionPublic,
    responses={**ERRORS, **ACCESS_ERRORS},
    openapi_extra=BATCH_BODY,
    summary="Classify up to N images in one request (N = VIGIL_MAX_BATCH_IMAGES, default 64)",
)
async def predict_batch(request: Request, ctx: CtxDep, _client: ClientDep) -> BatchPredictionPublic:
    """Send multipart/form-data with one file field named `images` per image (repeat the field).

    `results[i]` answers the i-th image: the same object as `/v1/predict` returns, or
    `{status, error}` when that image alone is refused, with the status and code `/v1/predict`
    would answer it with: an empty part (400 `empty_body`), an image over VIGIL_MAX_UPLOAD_BYTES
    (413 `payload_too_large`) or with too many pixels (413 `image_too_large`), bytes that are no
    image (415 `not_an_image`), a format outside the allow-list (415 `unsupported_format`) or a
    pixel mode that is not accepted (415 `unsupported_image_mode`), or a corrupt, truncated or
    multi-frame image (422 `corrupt_image`, `multi_frame_image`). The other images are still
    classified. Each image is logged as its own request with id `<request_id>-<i>`. More than N
    images: 413 `too_many_images`.
    """
    start = time.perf_counter()
    s = ctx.settings
    try:
        reject_unknown_query(request)
        parts = await batch_images(request, s.max_batch_upload_bytes, s.max_upload_bytes, s.max_batch_images, BodyPace.of(s))
        _ensure_log_room(ctx, len(parts))  # first: a batch refused for the server's state costs no more tokens
        charge_images(request, len(parts))
    except ApiError as e:
        if e.code != "log_backpressure":
            # No input fields: the refusal is the whole body's, not one image's (input_bytes 0
            # would claim an empty image), as /v1/predict logs a refusal before its image.
            _log_error(ctx, base_record(request, ctx.bundle.manifest, s.client_id_salt, ENDPOINT) | {"input_sha256": None}, e, start)
            mark_logged(request)
        raise
    decoded = await anyio.to_thread.run_sync(_decode_all, ctx, parts, limiter=ctx.decodes)
    good = [i for i, d in enumerate(decoded) if not isinstance(d, ApiError)]
    out: PipelineOutput | None = None
    if good:
        try:
            out = await ctx.runtime.run(torch.stack([decoded[i][0] for i in good]))  # type: ignore[index]
        except ApiError as e:
            # Every item is logged: those sent to inference with its failure, the others
            # with their own refusal (they never reached inference).
            for i, (data, d) in enumerate(zip(parts, decoded, strict=True)):
                _log_error(ctx, _item_record(request, ctx, i, data, None), d if isinstance(d, ApiError) else e, start)
            raise
    latency = (time.perf_counter() - start) * 1000
    rows = {i: k for k, i in enumerate(good)}
    results: list[PredictionPublic | BatchItemError] = []
    for i, (data, d) in enumerate(zip(parts, decoded, strict=True)):
        if isinstance(d, ApiError):
            record = _item_record(request, ctx, i, data, None)
            _log_error(ctx, record, d, start)
            results.append(BatchItemError(status=d.status, error=ErrorDetail(code=d.code, message=d.message, request_id=record["request_id"])))
            continue
        assert out is not None
        pred = build_prediction(out.row(rows[i]), ctx.bundle.manifest, item_id(request.state.request_id, i), latency)
        record = _item_record(request, ctx, i, data, d[1])
        record.update(log_fields(pred), http_status=200)
        submit(ctx, record)
        results.append(pred)
    return BatchPredictionPublic(request_id=request.state.request_id, results=results)
