"""Attaching ground truth to a logged request: append-only, the newest entry is current."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Row, func, insert, select, update

from service.db.tables import Feedback, RequestRecord

T = RequestRecord.__table__
F = Feedback.__table__


class UnknownRequest(LookupError):
    pass


class NoPrediction(ValueError):
    """The request was refused (a 4xx or 5xx row): there is no prediction to label."""


def add_feedback(
    engine: Engine, request_id: str, label: int, note: str | None, client_id: str | None, pending: Callable[[str], int | None]
) -> tuple[Row[Any], bool]:
    """Store a label; returns the new entry and whether it replaced an earlier one.

    `pending(request_id)` is the HTTP status of the request's row while it is still on its
    way (writer queue or spool), else None: feedback posted right after a prediction must
    not be refused for that, nor accepted on a refused request whose row is not stored yet.
    """
    now = dt.datetime.now(dt.UTC)
    # Queue first, database second: a row moves from one to the other, never back, so asked
    # in this order one of the two always holds it (the other order missed a row stored in
    # between, and answered a just-made prediction with 404). Asked before the transaction
    # begins, so that its snapshot is younger whatever the isolation level.
    queued = pending(request_id)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialise feedback per request so two concurrent posts cannot both stay current.
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(request_id, 0))))
        logged = conn.execute(select(T.c.http_status).where(T.c.request_id == request_id)).first()
        status = logged.http_status if logged is not None else queued
        if status is None:
            raise UnknownRequest(request_id)
        if status != 200:
            raise NoPrediction(request_id)
        # The new label first, then the mark on the ones before it: the database refuses a mark
        # with no newer label for the request (migration 0004).
        values = {"request_id": request_id, "true_label": label, "note": note, "client_id": client_id, "created_at": now}
        new_id = conn.execute(insert(F).values(**values)).inserted_primary_key[0]  # type: ignore[index]
        older = F.c.request_id == request_id, F.c.replaced_at.is_(None), F.c.id < new_id
        replaced = conn.execute(update(F).where(*older).values(replaced_at=now)).rowcount > 0
        row = conn.execute(select(F).where(F.c.id == new_id)).one()
    return row, replaced
