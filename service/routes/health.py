"""Liveness (process up) and readiness (model warmed up and database reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.context import CtxDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process is up")
def healthz() -> Health:
    """200 while the process answers at all: for a liveness probe (restart when it fails)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Readiness: model loaded, database reachable")
def readyz(ctx: CtxDep) -> JSONResponse:
    """200 when the model is warmed up and the database answers, else 503 with the failed
    check: for a readiness probe (send no traffic while it fails)."""
    checks = {"model": ctx.runtime.ready, "database": False}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:  # noqa: BLE001 - any driver error means "not reachable" here
        checks["database"] = False
    ok = all(checks.values())
    body = Health(status="ok" if ok else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
