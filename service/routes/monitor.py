"""GET /v1/monitor: the aggregate feed behind the `/monitor` page (issue 7).

It returns only counts, rates and histograms over a recent window (service/monitor.py),
never a request, an input or a client: public, like /metrics, unless
VIGIL_METRICS_ADMIN_ONLY puts both behind the admin key (they show the same traffic volumes
and error rates). Per-request data always needs it (`/v1/requests`, `/v1/reports/summary`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service import monitor
from service.access import METRICS_ERRORS, require_admin_for_metrics
from service.context import CtxDep
from service.dbcalls import DB_ERRORS
from service.query_params import StrictQuery

router = APIRouter(tags=["monitor"])


class MonitorSummary(BaseModel):
    model: dict[str, str] = Field(
        description="The served model's name and version; only its records are counted."
    )
    window: dict[str, Any] = Field(
        description="Start and end (UTC) of the window, its length in minutes, and the row cap."
    )
    requests: int = Field(
        description="Logged inputs in the window, refused ones included."
    )
    errors: int = Field(description="Refused inputs (4xx/5xx): no decision was made.")
    decisions: dict[str, int] = Field(
        description="Count per decision: accept, abstain, reject_ood."
    )
    rates: dict[str, float | None] = Field(
        description="Share of decided inputs accepted (`accept`), rejected as OOD (`ood`) and abstained on (`abstain`); null with none."
    )
    timeline: list[dict[str, Any]] = Field(
        description="Equal intervals over the window: start time and count per decision and `error`."
    )
    confidence: dict[str, list[float]] = Field(
        description="Calibrated-confidence histogram: bin `edges`, share per bin for `live` requests and for the validation `reference` in the model bundle."
    )
    reliability: dict[str, Any] = Field(
        description="Over inputs with a true label (feedback): their `count`, `accuracy`, and per confidence bin the count, mean confidence and accuracy."
    )

    model_config = {
        "json_schema_extra": {
            "example": {
                "model": {"name": "mnist-default", "version": "3"},
                "window": {
                    "start": "2026-11-28T10:00:00Z",
                    "end": "2026-11-28T11:00:00Z",
                    "minutes": 60,
                    "row_limit": 5000,
                },
                "requests": 42,
                "errors": 2,
                "decisions": {"accept": 35, "abstain": 3, "reject_ood": 2},
                "rates": {"accept": 0.875, "ood": 0.05, "abstain": 0.075},
                "timeline": [
                    {
                        "start": "2026-11-28T10:00:00Z",
                        "accept": 1,
                        "abstain": 0,
                        "reject_ood": 0,
                        "error": 0,
                    }
                ],
                "confidence": {
                    "edges": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                    "live": [0, 0, 0, 0, 0.05, 0.02, 0.03, 0, 0.05, 0.85],
                    "reference": [0, 0, 0, 0, 0.003, 0.004, 0.005, 0.004, 0.01, 0.974],
                },
                "reliability": {
                    "count": 3,
                    "accuracy": 0.67,
                    "bins": [
                        {
                            "lo": 0.9,
                            "hi": 1.0,
                            "count": 2,
                            "confidence": 0.99,
                            "accuracy": 1.0,
                        }
                    ],
                },
            }
        }
    }


@router.get(
    "/v1/monitor",
    response_model=MonitorSummary,
    summary="Aggregate view of recent requests (for the monitor page)",
    dependencies=[Depends(require_admin_for_metrics)],  # admin-only with VIGIL_METRICS_ADMIN_ONLY
    responses={**METRICS_ERRORS, **DB_ERRORS},
)
async def monitor_summary(ctx: CtxDep, _strict: StrictQuery) -> dict[str, Any]:
    """Counts, rates and histograms over the last `VIGIL_MONITOR_WINDOW_MINUTES` (at most
    `VIGIL_MONITOR_MAX_ROWS` newest records). Rows still in the writer's queue are not yet
    counted (typically under 100 ms)."""
    s = ctx.settings
    return await ctx.db.run(monitor.summary, ctx.engine, ctx.bundle.manifest, s.monitor_window_minutes, s.monitor_max_rows)
