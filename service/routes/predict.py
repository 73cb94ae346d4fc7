"""POST /v1/predict: one image in, the v1 contract out; every request logged, even rejected ones."""

from __future__ import annotations

import time
from typing import Any

import anyio
import torch
from fastapi import APIRouter, Request, Response

from models.preprocess import UPLOAD_FORMATS, to_model_input
from service.access import ACCESS_ERRORS, ClientDep
from service.context import AppContext, CtxDep
from service.db.writer import QueueFull
from service.decode import decode_image, decodes_quickly
from service.errors import ApiError
from service.query_params import reject_unknown_query
from service.records import base_record, error_fields, input_fields, pixel_fields
from service.rejections import mark_logged
from service.respond import build_prediction, log_fields
from service.schemas import PredictionPublic, error_responses
from service.shedding import OVERLOADED_DOC
from service.upload import BodyPace, image_bytes

router = APIRouter(tags=["predict"])

ERRORS = error_responses(
    {
        400: "Empty body or malformed multipart.",
        408: "No byte of the upload for VIGIL_BODY_IDLE_TIMEOUT_S (`body_timeout`).",
        413: "Body over the size limit, or image with too many pixels (refused before decoding).",
        415: "Missing/unsupported content type, not an image, a format outside the allow-list, or a compressed body (`unsupported_encoding`).",
        422: "Corrupt, truncated or multi-frame image, no 'image' field (`missing_image_field`), an 'image' part that is text, not a file (`not_a_file`), "
        "more than one file (`unexpected_file_field`), or a query parameter (`unknown_parameter`: this endpoint takes none).",
        500: "Inference failed for the batch this input was in (`inference_error`); the request is logged: quote its id.",
        503: f"Overloaded: {OVERLOADED_DOC}, the request log queue or the inference queue is full (`log_backpressure`, `inference_backpressure`), "
        "inference took longer than VIGIL_INFERENCE_TIMEOUT_S (`inference_timeout`), or the inference process stopped and "
        "is being restarted (`inference_unavailable`); retry after the Retry-After header.",
    }
)

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["image"], "properties": {"image": {"type": "string", "format": "binary"}}}
            },
            # A raw body may carry any image/* type (the bytes decide the format); these
            # are the allow-listed formats, each a choice in /docs and generated clients.
            **{f"image/{t.lower()}": {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_FORMATS},
        },
    }
}


def _decode(ctx: AppContext, data: bytes) -> tuple[torch.Tensor, dict[str, Any]]:
    s = ctx.settings
    img = decode_image(data, s.max_image_pixels, s.max_image_side)
    pixels = to_model_input(img.image, ctx.bundle.manifest.input)
    return pixels, input_fields(data, img.width, img.height, img.mode) | pixel_fields(pixels, s.log_store_inputs)


async def decode(ctx: AppContext, data: bytes) -> tuple[torch.Tensor, dict[str, Any]]:
    """Small images decode right here; big ones on a worker thread, off the event loop."""
    if decodes_quickly(data):
        return _decode(ctx, data)
    return await anyio.to_thread.run_sync(_decode, ctx, data, limiter=ctx.decodes)


def json_response(model: PredictionPublic) -> Response:
    """Serialise once, in pydantic's Rust core; returning the model would make FastAPI
    validate it against `response_model` again first (the schema in /docs is unchanged)."""
    return Response(content=model.model_dump_json(), media_type="application/json")


def submit(ctx: AppContext, record: dict[str, Any]) -> None:
    """Enqueue a log record; a full queue becomes a 503 instead of a silently lost row."""
    try:
        ctx.writer.submit(record)
    except QueueFull as e:
        raise ApiError(503, "log_backpressure", "the request log is saturated; retry shortly", {"Retry-After": "1"}) from e
    if ctx.metrics is not None:  # decision and OOD/abstention counters (issue 7)
        ctx.metrics.observe_record(record)


@router.post(
    "/v1/predict",
    response_model=PredictionPublic,
    responses={**ERRORS, **ACCESS_ERRORS},
    openapi_extra=IMAGE_BODY,
    summary="Classify one image, with calibrated uncertainty and a decision",
)
async def predict(request: Request, ctx: CtxDep, _client: ClientDep) -> Response:
    """Send one image as multipart field `image`, or as a raw body with an `image/*` content type.

    The answer says what the model predicts, how sure it is (calibrated), whether the
    prediction is likely wrong (`failure`), whether the input is unlike the training
    data (`ood`), a conformal prediction set, and a `decision` to act on.
    """
    start = time.perf_counter()
    manifest = ctx.bundle.manifest
    record = base_record(request, manifest, ctx.settings.client_id_salt, "/v1/predict")
    data = b""
    try:
        # `?model=...` or a typo would otherwise be ignored and look like it took effect.
        reject_unknown_query(request)
        data = await image_bytes(request, ctx.settings.max_upload_bytes, BodyPace.of(ctx.settings))
        pixels, fields = await decode(ctx, data)
        record.update(fields)
        out = await ctx.runtime.run(pixels.unsqueeze(0))
        latency = (time.perf_counter() - start) * 1000
        response = build_prediction(out, manifest, request.state.request_id, latency)
        record.update(log_fields(response), http_status=200)
        submit(ctx, record)
        mark_logged(request)  # a bug from here on must not log this request id a second time
        return json_response(response)
    except ApiError as e:
        if e.code != "log_backpressure":
            record.setdefault("input_sha256", None)
            if data and record["input_sha256"] is None:
                record.update(input_fields(data))
            submit(ctx, record | error_fields(e, start))
            mark_logged(request)
        raise
