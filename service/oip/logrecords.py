"""Request-log records for OIP inferences: one per input, like v1 (DESIGN.md's data flow)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from service.context import AppContext
from service.errors import ApiError
from service.records import error_fields, input_fields, item_id, pixel_fields
from service.respond import log_fields
from service.routes.predict import submit
from service.schemas import PredictionPublic


def tensor_fields(pixels: np.ndarray) -> dict[str, Any]:
    """Input facts for one ``[C, H, W]`` tensor; the hash is of its little-endian float32 bytes."""
    raw = np.ascontiguousarray(pixels, dtype="<f4").tobytes()
    c, h, w = pixels.shape
    return {
        "input_sha256": hashlib.sha256(raw).hexdigest(),
        "input_bytes": len(raw),
        "input_width": w,
        "input_height": h,
        "input_mode": f"F32x{c}",
    }


def log_inputs(
    ctx: AppContext,
    record: dict[str, Any],
    pixels: np.ndarray,
    preds: list[PredictionPublic],
) -> None:
    for x, p in zip(pixels, preds, strict=True):
        stored = pixel_fields(torch.from_numpy(x), ctx.settings.log_store_inputs)
        submit(
            ctx,
            {
                **record,
                **tensor_fields(x),
                **stored,
                **log_fields(p),
                "request_id": p.request_id,
                "http_status": 200,
            },
        )


def log_error(
    ctx: AppContext, record: dict[str, Any], body: bytes, e: ApiError, start: float
) -> None:
    """A refused inference is one record, keyed by the request id (never lost, like v1)."""
    if e.code == "log_backpressure":
        return
    record.update(input_fields(body))
    submit(ctx, record | error_fields(e, start))  # a 404 (an unknown model) credits no model


def log_failed_inputs(ctx: AppContext, record: dict[str, Any], pixels: np.ndarray, e: ApiError, start: float) -> None:
    """Inference failed for the whole request: one record per input, `<request id>-<i>`, as
    v1's batch logs its items, so a client's per-input ids find their failure."""
    failure = error_fields(e, start)
    for i, x in enumerate(pixels):
        submit(ctx, {**record, **tensor_fields(x), **failure, "request_id": item_id(record["request_id"], i)})
