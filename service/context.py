"""Everything the lifespan builds, in one object on `app.state`; routes get it by dependency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy import Engine

from models.bundle import Bundle
from service.db.writer import LogWriter
from service.dbcalls import DatabaseCalls
from service.metrics import Metrics
from service.runtime import InferenceRuntime
from service.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    bundle: Bundle
    runtime: InferenceRuntime
    engine: Engine
    writer: LogWriter
    #: SHA-256 digests of the admin keys (see service/auth.py); raw keys are not kept.
    admin_key_digests: list[str]
    #: Runs the database work of log reads, reports, the monitor and feedback (service/dbcalls.py).
    db: DatabaseCalls
    #: Prometheus metrics (service/metrics.py, issue 7); set by the lifespan, None in bare contexts.
    metrics: Metrics | None = None
    #: /readyz's database check in flight, shared by the probes that come while it waits.
    db_probe: asyncio.Future[bool] | None = None
    #: What the last finished readiness check of the database said (None before the first):
    #: /metrics shows it, since the writer only learns of an outage from a failed insert.
    db_answered: bool | None = None
    #: Worker threads image decodes may take (service/routes/predict.py); None: anyio's default pool.
    decodes: anyio.CapacityLimiter | None = None


async def get_ctx(request: Request) -> AppContext:
    # async on purpose: FastAPI runs a plain `def` dependency on its thread pool, a
    # thread hop per request (measured ~7% of the event loop's time under load).
    return request.app.state.ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]
