"""`vigil export`: the request log with each request's current label, as CSV or Parquet.

Rows stream from the database in chunks, so an export never holds the whole log. CSV
carries list columns as JSON text and leaves out the stored input (use Parquet for
that: a binary .npy column). Parquet needs pyarrow, imported only here.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    and_,
    select,
)

from service.db.queries import RequestFilter, utc
from service.db.tables import Feedback, RequestRecord

T = RequestRecord.__table__
F = Feedback.__table__
CHUNK = 5000
COLUMNS = [*T.columns, F.c.true_label, F.c.note.label("feedback_note"), F.c.created_at.label("feedback_at")]


def _rows(engine: Engine, f: RequestFilter) -> Iterator[list[dict[str, Any]]]:
    current = and_(F.c.request_id == T.c.request_id, F.c.replaced_at.is_(None))
    stmt = f.apply(select(*COLUMNS).select_from(T.outerjoin(F, current))).order_by(T.c.id)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=CHUNK).execute(stmt).mappings()
        for part in result.partitions():
            yield [dict(r) for r in part]


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP's CSV
#: injection): a feedback note `=HYPERLINK(...)`, posted by anyone holding a request id,
#: would run when an analyst opened the export.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """One CSV cell: lists and booleans as JSON (true/false, as the API writes them, not
    Python's True); text that a spreadsheet would take for a formula behind a quote."""
    if isinstance(value, (list, bool)):
        return json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(engine: Engine, f: RequestFilter, out: Path) -> int:
    names = [c.name for c in COLUMNS if c.name != "input_pixels"]
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for chunk in _rows(engine, f):
            for r in chunk:
                vals = [utc(r[c]).isoformat() if isinstance(r[c], dt.datetime) else r[c] for c in names]
                w.writerow([_cell(v) for v in vals])
            n += len(chunk)
    return n


def _arrow_schema() -> Any:
    import pyarrow as pa

    def kind(c: Any) -> Any:
        t = c.type
        if isinstance(t, JSON):
            return pa.list_(pa.int64() if c.name == "prediction_set" else pa.float64())
        if isinstance(t, DateTime):
            return pa.timestamp("us", tz="UTC")
        for sa_type, arrow in ((Boolean, pa.bool_()), (Float, pa.float64()), (LargeBinary, pa.binary())):
            if isinstance(t, sa_type):
                return arrow
        return pa.int64() if isinstance(t, (Integer, BigInteger)) else pa.string()

    return pa.schema([(c.name, kind(c)) for c in COLUMNS])


def to_parquet(engine: Engine, f: RequestFilter, out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency, but say what to do if it is gone
        raise SystemExit("parquet export needs pyarrow: pip install pyarrow (or use --format csv)") from e
    schema, n = _arrow_schema(), 0
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in _rows(engine, f):
            for r in chunk:
                r.update({k: utc(v) for k, v in r.items() if isinstance(v, dt.datetime)})
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            n += len(chunk)
    return n
