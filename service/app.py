"""The app factory: `create_app(settings)` wires everything; the lifespan builds and tears down.

Nothing is built at import time, which is what keeps tests isolated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.bundle import load_bundle
from service.auth import key_digest
from service.context import AppContext
from service.db.engine import make_engine
from service.db.migrate import is_at_head, upgrade
from service.db.writer import LogWriter
from service.errors import install_error_handlers
from service.middleware import RequestIdMiddleware
from service.routes import health, models, predict
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


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bundle = load_bundle(settings.model_dir)
        engine = make_engine(settings.database_url)
        if settings.migrate_on_start:
            upgrade(settings.database_url)
        elif not is_at_head(engine):
            raise SchemaNotReady(f"database {engine.url!r} is not at the newest schema: run `vigil db upgrade` or start with --migrate")
        runtime = InferenceRuntime(bundle, settings.torch_threads)
        runtime.warm_up()
        writer = LogWriter(engine, settings.log_queue_size, settings.log_batch_size, settings.log_flush_ms)
        writer.start()
        app.state.ctx = AppContext(settings, bundle, runtime, engine, writer, [key_digest(k) for k in settings.admin_api_keys])
        log.info("serving %s v%s (%s) from %s", bundle.manifest.name, bundle.manifest.version, bundle.manifest.method, settings.model_dir)
        try:
            yield
        finally:
            # Order: stop taking work, finish inference, then drain every log record.
            runtime.close()
            writer.stop()
            engine.dispose()

    app = FastAPI(title="Vigil", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for r in (predict.router, models.router, health.router):
        app.include_router(r)
    return app
