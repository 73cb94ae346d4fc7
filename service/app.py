"""The app factory: `create_app(settings)` wires everything; the lifespan builds and tears down.

Nothing is built at import time, which is what keeps tests isolated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from models.bundle import Bundle, load_bundle
from service.context import AppContext
from service.db.engine import make_engine
from service.db.migrate import is_at_head, upgrade
from service.db.spool import stray_spools
from service.db.writer import build_writer
from service.dbcalls import DatabaseCalls
from service.docs import install_openapi
from service.docs_pages import install_docs_pages
from service.errors import UnexpectedErrorMiddleware, install_error_handlers
from service.hardening import install_security
from service.head import HeadAsGet
from service.metrics import Metrics  # issue 7: demo, v2, metrics
from service.middleware import RequestIdMiddleware
from service.observe import ObserveMiddleware
from service.oip.errors import OipErrorMiddleware
from service.routes import (  # request log (issue 5)  # issue 7
    feedback,
    health,
    models,
    monitor,
    predict,
    predict_batch,
    reports,
    requests,
    v2,
)
from service.routes import metrics as metrics_route  # issue 7
from service.routes.pages import install_pages
from service.runtime import InferenceRuntime
from service.settings import Settings

log = logging.getLogger("vigil")

DESCRIPTION = """
Vigil classifies images and says when not to trust itself.

Every prediction carries calibrated probabilities, an uncertainty split, a **failure**
flag (the prediction is likely wrong), an **ood** flag (the input is unlike the training
data), a conformal prediction set, and a **decision**: `accept`, `abstain` (ask a human)
or `reject_ood` (do not use). Every request is logged for later analysis.
"""


class SchemaNotReady(RuntimeError):
    pass


#: Threads for image decodes: the two large-decode slots, plus two for the smaller images
#: behind them (decoding is CPU work; on a few cores more would not finish sooner).
DECODE_THREADS = 4


def create_app(settings: Settings, bundle: Bundle | None = None) -> FastAPI:
    """`bundle`: one already loaded from `settings.model_dir` (`vigil serve`'s preflight has
    read and hashed it), so start-up does not load it twice; else the lifespan loads it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal bundle
        if bundle is None:
            bundle = load_bundle(settings.model_dir)
        # Requests' own database work is bounded too (service/dbcalls.py).
        engine = make_engine(settings.database_url, statement_timeout_s=settings.db_timeout_s)
        if settings.migrate_on_start:
            upgrade(settings.database_url)
        elif not is_at_head(engine):
            raise SchemaNotReady(f"database {engine.url!r} is not at the newest schema: run `vigil db upgrade` or start with --migrate")
        runtime = InferenceRuntime.from_settings(bundle, settings)
        runtime.warm_up()
        # The writer's own engine bounds each insert, so a database that hangs sends rows to the spool.
        log_engine = make_engine(settings.database_url, statement_timeout_s=settings.log_write_timeout_s)
        try:
            writer = build_writer(log_engine, settings)
            writer.start()
        except BaseException:
            log_engine.dispose()
            raise
        db = DatabaseCalls(settings.db_concurrency, settings.db_timeout_s)
        app.state.ctx = AppContext(settings, bundle, runtime, engine, writer, list(app.state.keyring.admin), db)
        app.state.ctx.metrics = app.state.metrics  # counts every request-log record (issue 7)
        # Decodes take threads of their own: in anyio's shared pool, uploads that queue for the
        # two large-decode slots (service/decode.py) took all 40 threads, and the plain `def`
        # routes (model card, OIP health) waited behind them.
        app.state.ctx.decodes = anyio.CapacityLimiter(DECODE_THREADS)
        log.info("serving %s v%s (%s) from %s", bundle.manifest.name, bundle.manifest.version, bundle.manifest.method, settings.model_dir)
        # Which database and spool this process logs to (password masked), so an operator can tell.
        log.info("request log: %r, spool %s, writer %s", engine.url, writer.fallback.spool.path, writer.chain.writer_id)
        for stray in stray_spools(writer.fallback.spool.path):
            log.warning("%s holds request-log rows this process does not replay (another database URL?): "
                        "start a service with that URL, or `vigil` with VIGIL_LOG_SPOOL_PATH=%s, to store them", stray, stray)  # fmt: skip
        try:
            yield
        finally:
            # Order: stop taking work, finish inference, then drain every log record.
            await runtime.aclose()
            writer.stop(settings.log_drain_timeout_s)
            log_engine.dispose()
            engine.dispose()

    # redirect_slashes off: `/v1/predict/` is a 404 in the one error shape (and logged), not a
    # bodiless 307 whose Location is built from the client's Host header.
    app = FastAPI(
        title="Vigil", version="1.0.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False
    )
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost: a 500 still passes every layer below
    install_security(app, settings)  # issue 8; before RequestIdMiddleware, which must stay outermost
    # Issue 7: a per-app Prometheus registry; the lambda finds the context once the lifespan built it.
    app.state.metrics = Metrics(lambda: getattr(app.state, "ctx", None))
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics, log_requests=settings.log_requests)  # inside RequestIdMiddleware
    app.add_middleware(OipErrorMiddleware)  # /v2 errors in the OIP shape tritonclient reads
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for r in (predict.router, predict_batch.router, models.router, health.router, requests.router, feedback.router, reports.router):
        app.include_router(r)
    for r in (v2.router, metrics_route.router):  # issue 7
        app.include_router(r)
    if settings.demo_enabled:
        app.include_router(monitor.router)
        install_pages(app)
    install_openapi(app)  # issue 7: real error shapes and examples in /docs
    install_docs_pages(app)  # Swagger UI from local files: /docs works offline
    return app
