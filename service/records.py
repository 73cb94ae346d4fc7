"""Building request-log records (plain dicts, the writer's currency) from a request's life."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from starlette.requests import Request

from models.manifest import Manifest

if TYPE_CHECKING:  # service.errors imports the rejection log, which builds records
    from service.errors import ApiError


def client_id(request: Request, salt: str) -> str | None:
    """The caller's API key id when a key was used, else a salted hash of its address; never raw."""
    kid = getattr(request.state, "api_key_id", None)  # set by service/access.py (issue 8)
    if kid:
        return str(kid)
    host = request.client.host if request.client else None
    if host is None:
        return None
    return "ip:" + hashlib.sha256(f"{salt}:{host}".encode()).hexdigest()[:24]


def item_id(request_id: str, i: int) -> str:
    """The id of a batch's `i`-th input: its own record, prediction and error carry it, so a
    client finds each input's row from the request id it was given."""
    return f"{request_id}-{i}"


def base_record(request: Request, manifest: Manifest, salt: str, endpoint: str) -> dict[str, Any]:
    return {
        "request_id": request.state.request_id,
        "client_request_id": getattr(request.state, "client_request_id", None),
        "received_at": dt.datetime.now(dt.UTC),
        "endpoint": endpoint,
        "client_id": client_id(request, salt),
        "model_name": manifest.name,
        "model_version": manifest.version,
    }


def refusal_fields(status: int, code: str, message: str) -> dict[str, Any]:
    """What a refused request's record says about the refusal. A 404 named something that is
    not served (a model, a path): the served model is not credited with it."""
    fields: dict[str, Any] = {"http_status": status, "error_code": code, "error_message": message[:500]}
    if status == 404:
        fields.update(model_name=None, model_version=None)
    return fields


def error_fields(e: ApiError, start: float) -> dict[str, Any]:
    """`refusal_fields` of `e`, and the latency since `start`."""
    return {
        **refusal_fields(e.status, e.code, e.message),
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    }


def input_fields(data: bytes, width: int | None = None, height: int | None = None, mode: str | None = None) -> dict[str, Any]:
    return {
        "input_sha256": hashlib.sha256(data).hexdigest() if data else None,
        "input_bytes": len(data),
        "input_width": width,
        "input_height": height,
        "input_mode": mode,
    }


def pixel_fields(pixels: torch.Tensor, store: bool) -> dict[str, Any]:
    """The normalised model input ``[C, H, W]`` as .npy bytes (self-describing, read back with
    ``np.load(..., allow_pickle=False)``), when the operator chose to store inputs."""
    if not store:
        return {}
    buf = io.BytesIO()
    np.save(buf, pixels.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
    return {"input_pixels": buf.getvalue()}
