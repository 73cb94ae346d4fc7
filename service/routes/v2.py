"""Open Inference Protocol (KServe v2) REST endpoints beside v1 (issue 7).

`tritonclient.http` and KServe's clients call these unchanged, including Triton's
binary tensor extension. Every input of an inference is a request-log record, exactly
like a v1 prediction; errors use Vigil's one error shape.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.access import ClientDep, charge_images
from service.context import AppContext, CtxDep
from service.errors import ApiError, quoted
from service.oip import outputs, tensors
from service.oip.binary import HEADER
from service.oip.docs import INFER_BODY, INFER_ERRORS
from service.oip.logrecords import log_error, log_failed_inputs, log_inputs
from service.oip.schemas import (
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    OipError,
    Ready,
    ServerMetadata,
    TensorMetadata,
)
from service.query_params import StrictQuery, reject_unknown_query
from service.records import base_record, item_id
from service.rejections import mark_logged
from service.respond import build_prediction
from service.routes.health import can_compute
from service.upload import BodyPace, media_type, read_limited

router = APIRouter(tags=["open inference protocol (v2)"])
ENDPOINT = "/v2/models/{name}/infer"


#: Bodies an inference takes: JSON, or Triton's binary extension (JSON then raw tensors).
#: Any other type is refused, so that an HTML form (text/plain, urlencoded, multipart), which
#: a browser posts cross-site without asking, cannot run inference or write request-log rows.
#: Triton's own clients send no Content-Type at all, so a missing one is accepted, but not
#: from a browser (one that sends `Origin`): `fetch` with `mode: "no-cors"` and a Blob body
#: posts cross-site without a type and without asking too.
INFER_MEDIA_TYPES = ("application/json", "application/octet-stream")


def _infer_media_type(request: Request) -> None:
    ctype = media_type(request)
    if not ctype:
        if "origin" in request.headers:
            raise ApiError(415, "missing_content_type", "a browser must send the inference request with Content-Type: application/json")
        return
    if ctype not in INFER_MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the inference request as application/json (or Triton's binary extension as application/octet-stream), not {quoted(ctype)}",
        )


def _model(ctx: AppContext, name: str, version: str | None = None) -> None:
    m = ctx.bundle.manifest
    if name != m.name or (version is not None and version != m.version):
        raise ApiError(
            404,
            "unknown_model",
            f"no model named {quoted(name)}{'' if version is None else f' in version {quoted(version)}'}; served: {m.name!r} version {m.version!r}",
        )


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
def server_metadata(_strict: StrictQuery) -> ServerMetadata:
    """Name, version and protocol extensions (Triton's binary tensor data)."""
    return ServerMetadata(
        name="vigil", version="1.0.0", extensions=["binary_tensor_data"]
    )


@router.get("/v2/health/live", response_model=Live, responses={503: {"model": Live}}, summary="Liveness (OIP)")
async def live(ctx: CtxDep) -> JSONResponse:  # async: a probe must not wait for a pool thread
    """200 while the process can compute, 503 (`live: false`) once its inference process failed
    to start several times in a row, as /healthz: KServe probes this path, and a pod that can
    no longer compute must be restarted."""
    ok = can_compute(ctx)
    return JSONResponse(Live(live=ok).model_dump(), status_code=200 if ok else 503)


@router.get(
    "/v2/health/ready",
    response_model=Ready,
    responses={503: {"model": Ready}},
    summary="Readiness (OIP): model warmed up",
)
async def ready(ctx: CtxDep) -> JSONResponse:  # async: a probe must not wait for a pool thread
    """200 once the model is loaded and warmed up, else 503 (the database is checked by /readyz)."""
    ok = ctx.runtime.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get(
    "/v2/models/{name}",
    response_model=ModelMetadata,
    responses={404: {"model": OipError}},
    summary="Model metadata: tensor names, types, shapes",
)
@router.get(
    "/v2/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    include_in_schema=False,
)
def model_metadata(name: str, ctx: CtxDep, _strict: StrictQuery, version: str | None = None) -> ModelMetadata:
    """Input and output tensor names, datatypes and shapes (-1: any batch size)."""
    _model(ctx, name, version)
    m = ctx.bundle.manifest
    spec = m.input
    return ModelMetadata(
        name=m.name,
        versions=[m.version],
        platform="pytorch_vigil",
        inputs=[
            TensorMetadata(
                name=tensors.INPUT_NAME, datatype="FP32", shape=tensors.accepted_shapes(spec)[0]
            )
        ],
        outputs=outputs.metadata(len(m.class_names)),
    )


@router.get(
    "/v2/models/{name}/ready",
    response_model=ModelReady,
    responses={
        404: {"model": OipError},
        503: {"model": ModelReady, "description": "Still warming up."},
    },
    summary="Model readiness (OIP)",
)
@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    response_model=ModelReady,
    include_in_schema=False,
)
def model_ready(name: str, ctx: CtxDep, _strict: StrictQuery, version: str | None = None) -> JSONResponse:
    """200 when this model can serve, 503 while it warms up; 404 for another name."""
    _model(ctx, name, version)
    ok = ctx.runtime.ready
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


@router.post(
    "/v2/models/{name}/infer",
    response_model=InferResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_BODY,
    summary="Classify a batch of pixel tensors (Open Inference Protocol)",
)
@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    include_in_schema=False,
)
async def infer(
    name: str,
    request: Request,
    ctx: CtxDep,
    _client: ClientDep,
    version: str | None = None,
) -> Response:
    """Send `[N, 1, 28, 28]` (or `[N, 28, 28]`) FP32 pixels in [0, 1] as input `input`.

    The outputs are the v1 figures as named tensors: `probabilities`, `confidence`,
    `predictive_entropy`, `mutual_information`, `failure_score`/`failure_flagged`,
    `ood_score`/`ood_flagged`, `prediction_set` (a BOOL class mask), `decision` (BYTES)
    and `request_id` (BYTES, one per input: `<request id>-<i>` with the server's request id,
    which keys the request log, for the feedback endpoint). Thresholds are in
    the response `parameters`. Triton's binary tensor extension is supported both ways.
    """
    start = time.perf_counter()
    manifest = ctx.bundle.manifest
    record = base_record(request, manifest, ctx.settings.client_id_salt, ENDPOINT)
    body = b""
    inferring: np.ndarray | None = None  # the inputs while inference runs on them
    try:
        _model(ctx, name, version)
        reject_unknown_query(request)  # `?model=other` would otherwise look like it took effect
        _infer_media_type(request)
        body = await read_limited(request, ctx.settings.max_batch_upload_bytes, BodyPace.of(ctx.settings))
        # Off the event loop: parsing and validating up to VIGIL_MAX_JSON_BYTES of JSON takes a while.
        binary = media_type(request) == "application/octet-stream"
        req, chunks = await run_in_threadpool(tensors.parse_request, body, request.headers.get(HEADER), ctx.settings.max_json_bytes, binary)
        picks = outputs.selected(req)
        pixels = await run_in_threadpool(
            tensors.to_pixels,
            req,
            chunks,
            manifest.input,
            ctx.settings.max_batch_images,
        )
        charge_images(request, len(pixels))
        inferring = pixels
        out = await ctx.runtime.run(torch.from_numpy(pixels))
        inferring = None
        latency = (time.perf_counter() - start) * 1000
        rid = request.state.request_id
        ids = [item_id(rid, i) for i in range(len(pixels))]  # as /v1/predict/batch names its items
        preds = [
            build_prediction(out.row(i), manifest, ids[i], latency)
            for i in range(len(pixels))
        ]
        log_inputs(ctx, record, pixels, preds)
        content, header_length = outputs.response(req, picks, preds, manifest)
    except ApiError as e:
        if inferring is not None:
            log_failed_inputs(ctx, record, inferring, e, start)
        else:
            log_error(ctx, record, body, e, start)
        mark_logged(request)
        raise
    if header_length is None:
        return JSONResponse(content)
    return Response(
        content,
        media_type="application/octet-stream",
        headers={HEADER: str(header_length)},
    )
