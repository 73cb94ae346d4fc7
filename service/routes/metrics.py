"""GET /metrics in the Prometheus text format, from the app's own registry (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.access import METRICS_ERRORS, require_admin_for_metrics

router = APIRouter(tags=["health"])

METRICS_DOC = """Request counts by route template, method and status (`vigil_http_requests_total`);
latency histograms (`vigil_http_request_duration_seconds`); logged inputs by endpoint,
status and decision (`vigil_predictions_total`); OOD rejections and abstentions
(`vigil_ood_rejections_total`, `vigil_abstentions_total`); micro-batch sizes
(`vigil_inference_batch_size`) and queue depth (`vigil_inference_queue_depth`);
the request-log queue depth, writer lag, rows written, spooled and failed writes."""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=METRICS_DOC,
    response_class=Response,
    dependencies=[
        Depends(require_admin_for_metrics)
    ],  # issue 8: admin-only when configured
    responses={
        **METRICS_ERRORS,  # a wrong key; with VIGIL_METRICS_ADMIN_ONLY, no admin key
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": 'vigil_predictions_total{decision="accept",endpoint="/v1/predict",status="200"} 42.0\n'
                }
            }
        }
    },
)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
    )
