"""GET /v1/reports/summary (admin): decisions, rates per hour, calibration on feedback, drift."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.access import ADMIN_ERRORS
from service.analysis.summary import summarise
from service.auth import AdminDep
from service.context import CtxDep
from service.db.queries import WindowError, report_window
from service.dbcalls import DB_ERRORS
from service.errors import ApiError
from service.params import ModelName, UtcTime
from service.query_params import StrictQuery
from service.schemas_report import SummaryPublic

router = APIRouter(tags=["request log"])


@router.get("/v1/reports/summary", response_model=SummaryPublic, responses={**ADMIN_ERRORS, **DB_ERRORS}, summary="Summary of the request log (admin)")
async def summary(
    ctx: CtxDep,
    _admin: AdminDep,
    _strict: StrictQuery,
    since: Annotated[UtcTime | None, Query(description="Window start: ISO 8601 (naive means UTC) or a span back from now (90m, 24h, 7d); default the 24 h before `until` (24 h ago when `until` is not given).")] = None,
    until: Annotated[UtcTime | None, Query(description="Window end (as `since`); default now.")] = None,
    model: Annotated[ModelName | None, Query(description="Only this model name.")] = None,
) -> SummaryPublic:
    """Accuracy, ECE and selective risk use requests with feedback; drift compares recent
    confidence and OOD scores of the served model with its validation reference."""
    try:
        start, end = report_window(since, until)
    except WindowError as e:
        raise ApiError(422, "invalid_window", str(e)) from e
    return await ctx.db.run(summarise, ctx.engine, ctx.bundle.manifest, start, end, model)
