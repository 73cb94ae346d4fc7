"""Liveness (the process can still serve) and readiness (model ready, request log writable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.context import AppContext, CtxDep
from service.inference_process import UNRECOVERABLE_AFTER
from service.schemas import Health

router = APIRouter(tags=["health"])


#: Seconds /readyz waits for the database's answer: probes time out in 2-3 s (the image's
#: HEALTHCHECK, the health probe), and a database that stopped answering must read as away.
DATABASE_CHECK_S = 1.0


def _select_one(ctx: AppContext) -> bool:
    try:
        with ctx.engine.connect() as conn:
            # A row of the schema, not `SELECT 1`: SQLite answers that without reading its file,
            # so a file that is no (longer a) database read as a healthy one.
            conn.execute(text("SELECT 1 FROM alembic_version LIMIT 1"))
        return True
    except Exception:  # noqa: BLE001 - any driver error means "not reachable" here
        return False


async def _database_answers(ctx: AppContext) -> bool:
    """Whether the database answers within `DATABASE_CHECK_S`. A check still waiting then is
    left to finish on its thread, and the next probes wait on that same check instead of
    starting their own: a server that stopped answering (where no timeout ends the wait) holds
    one thread and one connection, not one per probe."""
    check = ctx.db_probe
    if check is None or check.done():
        check = ctx.db_probe = asyncio.ensure_future(asyncio.to_thread(_select_one, ctx))
    try:
        ctx.db_answered = await asyncio.wait_for(asyncio.shield(check), DATABASE_CHECK_S)
    except TimeoutError:
        ctx.db_answered = False
    return ctx.db_answered


def _answer(checks: dict[str, bool], ok: bool) -> JSONResponse:
    body = Health(status="ok" if ok else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}}, summary="Liveness: the process can still serve")
async def healthz(ctx: CtxDep) -> JSONResponse:  # async: a liveness probe must not wait for a pool thread
    """200 while the process answers and can compute: for a liveness probe (restart when it
    fails). 503 when its inference process failed to start several times in a row (the bundle
    gone from disk, memory exhausted): only a restart of the whole service can help then."""
    computing = can_compute(ctx)
    return _answer({"inference": computing}, computing)


def can_compute(ctx: AppContext) -> bool:
    """False once the inference process failed to start UNRECOVERABLE_AFTER times in a row:
    the liveness of /healthz and OIP's /v2/health/live alike."""
    remote = ctx.runtime.remote
    return remote is None or remote.failed_restarts < UNRECOVERABLE_AFTER


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Readiness: model ready, request log writable")
async def readyz(ctx: CtxDep) -> JSONResponse:
    """200 when the model is warmed up (and its inference process alive) and every request
    can be logged: in the database, or in the spool while the database is away (rows are
    replayed when it is back, so predictions go on). 503 with the failed check otherwise:
    for a readiness probe (send no traffic while it fails). `database` says whether the
    database answers now; it alone does not make the service unready, or a database outage
    would take every replica out of rotation at once. Nor does `request_log_stored`: false
    while rows wait in the spool (the last insert failed, or a replay is due), which a database
    that answers reads but refuses this service's inserts (a revoked grant) also causes."""
    remote = ctx.runtime.remote
    database = await _database_answers(ctx)
    fallback = ctx.writer.fallback
    checks = {
        "model": ctx.runtime.ready and (remote is None or remote.alive),
        "database": database,
        # A spool append the disk refused (full) counts, not only whether a file can be created.
        "request_log": database or (fallback.spool.writable() and not fallback.refusing),
        "request_log_stored": ctx.writer.database_up and not fallback.pending,
    }
    return _answer(checks, checks["model"] and checks["request_log"])
