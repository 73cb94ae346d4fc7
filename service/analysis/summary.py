"""GET /v1/reports/summary and `vigil report`: one window of the log, turned into answers."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict

import numpy as np
from sqlalchemy import Engine

from models.manifest import Manifest
from service.analysis.calibration import ECE_BINS, ece, reliability, selective_risk
from service.analysis.drift import compare, verdict
from service.analysis.load import Window, load_window
from service.schemas_report import (
    BinPublic,
    DriftPublic,
    FeedbackStats,
    HistogramPublic,
    HourPublic,
    KsPublic,
    SummaryPublic,
)

DECISIONS = ("accept", "abstain", "reject_ood")


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _hourly(w: Window) -> list[HourPublic]:
    hours: dict[dt.datetime, list[int]] = {}
    for i, t in enumerate(w.received_at):
        hours.setdefault(t.replace(minute=0, second=0, microsecond=0), []).append(i)
    out = []
    for hour, idx in sorted(hours.items()):
        d = Counter(x for x in w.decision[idx] if x is not None)
        n = sum(d.values())
        counts = {k: d.get(k, 0) for k in DECISIONS}
        out.append(HourPublic(hour=hour, requests=len(idx), predictions=n, decisions=counts,
                              ood_rate=_rate(d["reject_ood"], n), abstention_rate=_rate(d["abstain"], n)))  # fmt: skip
    return out


def _feedback(w: Window) -> FeedbackStats:
    m = w.predicted_mask & (w.label >= 0)
    conf, correct = w.confidence[m], w.predicted[m] == w.label[m]
    accepted = w.decision[m] == "accept"
    risk, coverage = selective_risk(correct, accepted)
    bins = [BinPublic(**asdict(b)) for b in reliability(conf, correct)]
    n = int(m.sum())
    return FeedbackStats(n=n, accuracy=float(correct.mean()) if n else None, ece=ece(conf, correct) if n else None,
                         reliability=bins, accepted=int(accepted.sum()), coverage=coverage, selective_risk=risk)  # fmt: skip


def _ks(c: object) -> KsPublic | None:
    return KsPublic(**asdict(c)) if c is not None else None  # type: ignore[call-overload]


def _drift(w: Window, manifest: Manifest, model: str | None) -> DriftPublic:
    served = f"{manifest.name}/{manifest.version}"
    ref = manifest.reference
    has_ref = bool(ref.get("confidence")) and bool(ref.get("ood_score")) and model in (None, manifest.name)
    mine = w.predicted_mask & (w.model == served)
    conf = compare(w.confidence[mine], np.asarray(ref.get("confidence", []))) if has_ref else None
    ood = compare(w.ood_score[mine], np.asarray(ref.get("ood_score", []))) if has_ref else None
    return DriftPublic(model=served if has_ref else None, confidence=_ks(conf), ood_score=_ks(ood),
                       verdict=verdict(conf, ood, int(mine.sum()), has_ref, served))  # fmt: skip


def _histogram(w: Window, manifest: Manifest) -> HistogramPublic:
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    counts, _ = np.histogram(w.confidence[w.predicted_mask], bins=edges)
    ref = np.asarray(manifest.reference.get("confidence", []))
    share = (np.histogram(ref, bins=edges)[0] / len(ref)).tolist() if len(ref) else None
    return HistogramPublic(edges=edges.tolist(), counts=counts.tolist(), reference=share)


def summarise(engine: Engine, manifest: Manifest, since: dt.datetime, until: dt.datetime, model: str | None) -> SummaryPublic:
    w = load_window(engine, since, until, model)
    scores = w.ood_score[w.predicted_mask]
    quantiles = {f"p{q}": float(np.quantile(scores, q / 100)) for q in (50, 90, 99)} if len(scores) else None
    return SummaryPublic(
        since=since,
        until=until,
        model=model,
        requests=len(w.received_at),
        errors=int((w.http_status >= 400).sum()),
        decisions={k: int((w.decision == k).sum()) for k in DECISIONS},
        hourly=_hourly(w),
        confidence=_histogram(w, manifest),
        ood_score_quantiles=quantiles,
        feedback=_feedback(w),
        drift=_drift(w, manifest, model),
    )
