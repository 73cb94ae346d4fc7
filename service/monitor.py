"""Aggregates of the recent request log for the `/monitor` page (issue 7).

Only counts, rates and histograms leave this module: no request ids, client ids,
inputs or individual predictions. That is why its endpoint can stay public while the
per-request views (`/v1/requests`, the summary report) need an admin key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, select

from models.manifest import Manifest
from service.db.queries import utc
from service.db.tables import Feedback, RequestRecord

DECISIONS = ("accept", "abstain", "reject_ood")
BINS = 10
TIMELINE_BUCKETS = 30


def zulu(t: dt.datetime) -> str:
    """A UTC time as the other endpoints write it (pydantic: `...Z`, not `+00:00`)."""
    return utc(t).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Rows:
    received_at: list[dt.datetime]
    decision: list[str | None]
    confidence: np.ndarray
    predicted: list[int | None]
    true_label: list[int | None]


def fetch(engine: Engine, model_name: str, model_version: str, since: dt.datetime, limit: int) -> Rows:
    """The newest `limit` records of this model version since `since`, with their current
    feedback label. By version too, as the feed says and the summary's drift check does: a
    refit v2 behind the same name showed v1's requests under its own name."""
    fb = and_(
        Feedback.request_id == RequestRecord.request_id, Feedback.replaced_at.is_(None)
    )
    q = (
        select(
            RequestRecord.received_at,
            RequestRecord.decision,
            RequestRecord.confidence,
            RequestRecord.predicted_label,
            Feedback.true_label,
        )
        .outerjoin(Feedback, fb)
        .where(
            RequestRecord.model_name == model_name,
            RequestRecord.model_version == model_version,
            RequestRecord.received_at >= since,
        )
        .order_by(RequestRecord.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return Rows(
        [utc(r[0]) for r in rows],
        [r[1] for r in rows],
        np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float),
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


def histogram(values: np.ndarray) -> list[float]:
    """Fractions per bin over [0, 1]; empty input gives zeros, not NaN."""
    v = values[np.isfinite(values)]
    counts, _ = np.histogram(v, bins=BINS, range=(0.0, 1.0))
    return [round(float(c) / len(v), 6) if len(v) else 0.0 for c in counts]


def timeline(rows: Rows, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    width = (end - start) / TIMELINE_BUCKETS
    buckets = [
        {
            "start": zulu(start + i * width),
            **{d: 0 for d in (*DECISIONS, "error")},
        }
        for i in range(TIMELINE_BUCKETS)
    ]
    for t, d in zip(rows.received_at, rows.decision, strict=True):
        i = min(max(int((t - start) / width), 0), TIMELINE_BUCKETS - 1)
        buckets[i][d if d in DECISIONS else "error"] += 1
    return buckets


def reliability(rows: Rows) -> dict[str, Any]:
    """Confidence vs accuracy, per confidence bin, over predictions that have feedback."""
    pairs = [
        (c, p == y)
        for c, p, y in zip(
            rows.confidence, rows.predicted, rows.true_label, strict=True
        )
        if y is not None and p is not None
    ]
    conf = np.array([c for c, _ in pairs], dtype=float)
    right = np.array([r for _, r in pairs], dtype=float)
    bins = []
    for i in range(BINS):
        lo, hi = i / BINS, (i + 1) / BINS
        m = (conf >= lo) & ((conf < hi) if i < BINS - 1 else (conf <= hi))
        n = int(m.sum())
        bins.append(
            {
                "lo": lo,
                "hi": hi,
                "count": n,
                "confidence": float(conf[m].mean()) if n else None,
                "accuracy": float(right[m].mean()) if n else None,
            }
        )
    return {
        "count": len(pairs),
        "accuracy": float(right.mean()) if pairs else None,
        "bins": bins,
    }


def summary(
    engine: Engine, manifest: Manifest, window_minutes: int, limit: int
) -> dict[str, Any]:
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(minutes=window_minutes)
    rows = fetch(engine, manifest.name, manifest.version, start, limit)
    counts = {d: rows.decision.count(d) for d in DECISIONS}
    predicted = sum(counts.values())
    return {
        "model": {"name": manifest.name, "version": manifest.version},
        "window": {
            "start": zulu(start),
            "end": zulu(end),
            "minutes": window_minutes,
            "row_limit": limit,
        },
        "requests": len(rows.decision),
        "errors": len(rows.decision) - predicted,
        "decisions": counts,
        # Shares of the answered predictions (refusals are `errors`), side by side on the page.
        "rates": {
            "accept": counts["accept"] / predicted if predicted else None,
            "ood": counts["reject_ood"] / predicted if predicted else None,
            "abstain": counts["abstain"] / predicted if predicted else None,
        },
        "timeline": timeline(rows, start, end),
        "confidence": {
            "edges": [i / BINS for i in range(BINS + 1)],
            "live": histogram(rows.confidence),
            "reference": histogram(
                np.asarray(manifest.reference.get("confidence", []), dtype=float)
            ),
        },
        "reliability": reliability(rows),
    }
