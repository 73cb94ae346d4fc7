"""Helpers for request-log tests: synthetic records, reading rows back, a lock held on the table."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, func, select

from service.db.engine import make_engine
from service.db.tables import RequestRecord


def record(i: int = 0, **extra: Any) -> dict[str, Any]:
    """A plausible logged prediction; `i` varies the numbers."""
    conf = 0.5 + (i % 50) / 100
    return {
        "request_id": uuid.uuid4().hex,
        "received_at": dt.datetime.now(dt.UTC),
        "endpoint": "/v1/predict",
        "model_name": "tiny",
        "model_version": "1",
        "predicted_label": i % 10,
        "probabilities": [conf] + [(1 - conf) / 9] * 9,
        "confidence": conf,
        "ood_score": 0.1 * (i % 7),
        "ood_flagged": i % 7 == 6,
        "failure_flagged": False,
        "decision": "reject_ood" if i % 7 == 6 else "accept",
        "latency_ms": 1.5,
        "http_status": 200,
        **extra,
    }


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(RequestRecord.request_id)))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(RequestRecord)).scalar_one()


def logged(url: str, request_id: str) -> RequestRecord:
    """The request's log row; the writer flushes every 100 ms, so wait a little."""
    engine = make_engine(url)
    try:
        for _ in range(100):
            with engine.connect() as conn:
                row = conn.execute(select(RequestRecord).where(RequestRecord.request_id == request_id)).first()
            if row is not None:
                return row
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"request {request_id} was not logged")


@contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Another session holds the request log's lock (a long migration, a stuck transaction)."""
    holder = make_engine(url)
    with holder.connect() as conn:
        trans = conn.begin()
        conn.exec_driver_sql("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            trans.rollback()
    holder.dispose()
