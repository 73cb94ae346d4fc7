"""The database goes away mid-traffic and comes back: every answered request is stored exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db.audit import verify
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.settings import Settings
from tests.images import noise_png
from tests.service.own_postgres import own_postgres

CLIENTS, PER_CLIENT = 4, 500


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_outage_loses_and_duplicates_nothing(tiny_bundle: Path, tmp_path: Path) -> None:
    images = [noise_png(s) for s in range(16)]
    with own_postgres() as pg:
        settings = Settings(model_dir=tiny_bundle, database_url=pg.url, migrate_on_start=True, log_flush_ms=20,
                            log_spool_path=tmp_path / "spool.jsonl", log_replay_interval_s=0.2)  # fmt: skip
        app = create_app(settings)
        received: list[list[str]] = [[] for _ in range(CLIENTS)]
        done = threading.Semaphore(0)

        def client_loop(k: int, client: TestClient) -> None:
            for i in range(PER_CLIENT):
                r = client.post("/v1/predict", content=images[i % 16], headers={"content-type": "image/png"})
                assert r.status_code == 200, r.text
                received[k].append(r.json()["request_id"])
                done.release()

        def wait_answers(n: int) -> None:
            for _ in range(n):
                assert done.acquire(timeout=30), "clients stalled"

        with TestClient(app) as client:
            threads = [threading.Thread(target=client_loop, args=(k, client)) for k in range(CLIENTS)]
            for t in threads:
                t.start()
            total = CLIENTS * PER_CLIENT
            wait_answers(total // 3)
            pg.stop("fast")  # mid-traffic: open transactions are cut, new connections refused
            wait_answers(total // 3)
            outage_spooled = app.state.ctx.writer.spooled
            pg.start()
            for t in threads:
                t.join(60)
            time.sleep(0.1)
        # The TestClient exit ran the lifespan shutdown: queue drained, spool replayed.
        writer = app.state.ctx.writer
        ids = [rid for ids in received for rid in ids]
        assert len(ids) == total and outage_spooled > 0 and writer.failures >= 1 and writer.replayed >= outage_spooled
        engine = make_engine(pg.url)
        with engine.connect() as conn:
            stored = list(conn.scalars(select(RequestRecord.request_id)))
            n_distinct = conn.execute(select(func.count(func.distinct(RequestRecord.request_id)))).scalar_one()
        assert len(stored) == n_distinct == total and set(stored) == set(ids)
        assert verify(engine).ok
        engine.dispose()
    assert not settings.log_spool_path.read_text()  # type: ignore[union-attr]
