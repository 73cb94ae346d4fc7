"""SQLAlchemy 2 ORM tables. The schema changes only through Alembic migrations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RequestRecord(Base):
    """One prediction request, successful or rejected."""

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    client_request_id: Mapped[str | None] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(100), index=True)
    model_version: Mapped[str | None] = mapped_column(String(50))
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    input_bytes: Mapped[int | None] = mapped_column(Integer)
    input_width: Mapped[int | None] = mapped_column(Integer)
    input_height: Mapped[int | None] = mapped_column(Integer)
    input_mode: Mapped[str | None] = mapped_column(String(16))
    predicted_label: Mapped[int | None] = mapped_column(Integer)
    class_name: Mapped[str | None] = mapped_column(String(100))
    probabilities: Mapped[list[float] | None] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)
    predictive_entropy: Mapped[float | None] = mapped_column(Float)
    mutual_information: Mapped[float | None] = mapped_column(Float)
    failure_method: Mapped[str | None] = mapped_column(String(32))
    failure_score: Mapped[float | None] = mapped_column(Float)
    failure_threshold: Mapped[float | None] = mapped_column(Float)
    failure_flagged: Mapped[bool | None] = mapped_column(Boolean)
    ood_method: Mapped[str | None] = mapped_column(String(32))
    ood_score: Mapped[float | None] = mapped_column(Float)
    ood_threshold: Mapped[float | None] = mapped_column(Float)
    ood_flagged: Mapped[bool | None] = mapped_column(Boolean)
    prediction_set: Mapped[list[int] | None] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(16), index=True)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    http_status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    #: Normalised model input as .npy bytes ([C, H, W] float32 in [0, 1]); only with VIGIL_LOG_STORE_INPUTS.
    input_pixels: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Tamper evidence (service/db/chain.py): each writer numbers its rows and chains their hashes.
    writer_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ux_request_log_writer_seq", "writer_id", "seq", unique=True),)

    def as_dict(self) -> dict[str, Any]:
        return {c.name: getattr(self, c.name) for c in self.__table__.columns}


class Feedback(Base):
    """Ground truth for a logged request. Append-only: a newer entry sets `replaced_at` on the
    older one, so the history stays (migration 0003's triggers refuse every other change, and
    any DELETE, for every role; 0004's, a mark with no newer label). No foreign key: feedback may arrive while the request's
    row is still in the writer's queue or spool."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    true_label: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: Null for the current entry of a request; set when a newer entry replaces it.
    replaced_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
