"""`vigil audit verify`: walk every writer's chain and report where it breaks.

A row breaks its chain when its contents no longer match its hash (edited), when its
``prev_hash`` is not the previous row's hash (a neighbour was edited and re-hashed), or
when sequence numbers jump (rows deleted). Rows without chain fields are breaks too:
nobody can vouch for them. Limit (inherent to hash chains): deleting the newest rows of a
chain leaves no trace in the database; compare with the chain head the writer logs at stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, or_, select

from service.db.chain import GENESIS, row_hash
from service.db.tables import RequestRecord

T = RequestRecord.__table__


@dataclass(frozen=True)
class Break:
    row_id: int
    request_id: str
    writer_id: str | None
    seq: int | None
    reason: str


@dataclass
class AuditResult:
    rows: int = 0
    chains: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first(self) -> Break | None:
        return min(self.breaks, key=lambda b: b.row_id) if self.breaks else None


def _check(row: Mapping[str, Any], expected_seq: int, prev: str) -> str | None:
    if row["seq"] != expected_seq:
        return f"sequence jumps from {expected_seq - 1} to {row['seq']}: rows before this one are missing"
    if row["prev_hash"] != prev:
        return "prev_hash does not match the previous row's hash: the previous row was altered"
    if row_hash(dict(row)) != row["row_hash"]:
        return "contents do not match the row's hash: this row was altered"
    return None


def verify(engine: Engine, batch: int = 2000) -> AuditResult:
    """Stream all rows in chain order; memory stays flat however large the log."""
    result = AuditResult()
    unchained = or_(T.c.writer_id.is_(None), T.c.seq.is_(None), T.c.row_hash.is_(None))
    with engine.connect() as conn:
        for r in conn.execute(select(T.c.id, T.c.request_id, T.c.writer_id, T.c.seq).where(unchained)):
            result.rows += 1
            result.breaks.append(Break(r.id, r.request_id, r.writer_id, r.seq, "row carries no chain hash"))
        stmt = select(T).where(~unchained).order_by(T.c.writer_id, T.c.seq)
        writer: str | None = None
        expected, prev = 1, GENESIS
        for row in conn.execution_options(yield_per=batch).execute(stmt).mappings():
            if row["writer_id"] != writer:
                writer, expected, prev = row["writer_id"], 1, GENESIS
                result.chains += 1
            result.rows += 1
            reason = _check(row, expected, prev)
            if reason:
                result.breaks.append(Break(row["id"], row["request_id"], writer, row["seq"], reason))
            expected, prev = row["seq"] + 1, row["row_hash"]
    return result
