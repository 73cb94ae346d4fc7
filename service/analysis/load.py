"""The columns a summary needs, for one time window and model, with the current feedback label."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, and_, select

from service.db.queries import RequestFilter, utc
from service.db.tables import Feedback, RequestRecord

T = RequestRecord.__table__
F = Feedback.__table__


@dataclass
class Window:
    """Parallel arrays, one entry per logged request in the window."""

    received_at: list[dt.datetime]
    decision: np.ndarray  # object: str or None
    http_status: np.ndarray
    model: np.ndarray  # object: "name/version" or None
    confidence: np.ndarray  # nan where no prediction
    ood_score: np.ndarray
    predicted: np.ndarray  # -1 where no prediction
    label: np.ndarray  # -1 where no feedback

    @property
    def predicted_mask(self) -> np.ndarray:
        return np.not_equal(self.decision, None)  # elementwise on an object array


def load_window(engine: Engine, since: dt.datetime, until: dt.datetime, model: str | None) -> Window:
    current = and_(F.c.request_id == T.c.request_id, F.c.replaced_at.is_(None))
    cols = (T.c.received_at, T.c.decision, T.c.http_status, T.c.model_name, T.c.model_version)
    cols += (T.c.confidence, T.c.ood_score, T.c.predicted_label, F.c.true_label)
    stmt = RequestFilter(since=since, until=until, model=model).apply(select(*cols).select_from(T.outerjoin(F, current)))
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(T.c.received_at)).all()

    def num(i: int, missing: float) -> np.ndarray:
        return np.array([missing if r[i] is None else r[i] for r in rows], dtype=np.float64)

    return Window(
        # In UTC whatever the session's time zone (PostgreSQL hands back its own): hours are UTC hours.
        received_at=[utc(r[0]) for r in rows],
        decision=np.array([r[1] for r in rows], dtype=object),
        http_status=np.array([r[2] for r in rows], dtype=np.int64),
        model=np.array([f"{r[3]}/{r[4]}" if r[3] else None for r in rows], dtype=object),
        confidence=num(5, np.nan),
        ood_score=num(6, np.nan),
        predicted=num(7, -1).astype(np.int64),
        label=num(8, -1).astype(np.int64),
    )
