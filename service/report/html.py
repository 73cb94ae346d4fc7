"""The report page: the summary's numbers and four charts, in one file with no external links."""

from __future__ import annotations

import datetime as dt
from html import escape

from service.report import svg
from service.schemas_report import HourPublic, SummaryPublic

STYLE = """body{font:14px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse}
td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}.verdict{padding:.6em 1em;
background:#f4f4f4;border-left:4px solid #2b6cb0}.drift{border-color:#c53030}.muted{color:#777}"""


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _drift(s: SummaryPublic) -> str:
    d = s.drift
    css = "verdict drift" if d.verdict.startswith("drift") else "verdict"
    rows = []
    for name, ks in (("confidence", d.confidence), ("OOD score", d.ood_score)):
        if ks is not None:
            text = f"KS D={ks.statistic:.3f}, p={ks.p_value:.2g}, median {ks.recent_median:.3g} (validation {ks.reference_median:.3g})"
            rows.append((name, f"{text}, n={ks.n_recent} vs {ks.n_reference}"))
    return f'<p class="{css}">{escape(d.verdict)}</p>' + (_table(rows) if rows else "")


def _calibration(s: SummaryPublic) -> str:
    f = s.feedback
    if f.n == 0:
        return '<p class="muted">No feedback in this window: post true labels to /v1/requests/{id}/feedback.</p>'
    facts = [("requests with feedback", str(f.n)), ("accuracy", _pct(f.accuracy)), ("ECE (15 bins)", _pct(f.ece)),
             ("accepted (coverage)", f"{f.accepted} ({_pct(f.coverage)})"), ("selective risk of accepted", _pct(f.selective_risk))]  # fmt: skip
    chart = svg.reliability("Reliability diagram", [(b.lower, b.upper, b.accuracy, b.count) for b in f.reliability])
    return _table(facts) + chart


#: Longest span (hours) charted hour by hour: a month. The summary lists only hours with
#: requests; drawn evenly spaced, those squeezed the empty hours out of the time axis.
EVERY_HOUR_MAX = 31 * 24


def every_hour(hourly: list[HourPublic]) -> tuple[list[HourPublic], bool]:
    """The hours from the first to the last, the empty ones as zero-request hours, and True;
    past `EVERY_HOUR_MAX` the hours as given, and False."""
    if not hourly:
        return [], True
    first = hourly[0].hour
    span = int((hourly[-1].hour - first).total_seconds() // 3600) + 1
    if span > EVERY_HOUR_MAX:
        return hourly, False
    given = {h.hour: h for h in hourly}
    empty = {"accept": 0, "abstain": 0, "reject_ood": 0}
    return [
        given.get(t) or HourPublic(hour=t, requests=0, predictions=0, decisions=empty, ood_rate=None, abstention_rate=None)
        for t in (first + dt.timedelta(hours=i) for i in range(span))
    ], True


def _over_time(s: SummaryPublic) -> str:
    if not s.hourly:
        return '<p class="muted">No requests in this window.</p>'
    hourly, complete = every_hour(s.hourly)
    labels = [h.hour.strftime("%d %Hh") for h in hourly]  # day of month and UTC hour
    decisions = {k: [h.decisions.get(k, 0) for h in hourly] for k in ("accept", "abstain", "reject_ood")}
    rates = {"OOD rate": [h.ood_rate for h in hourly], "abstention rate": [h.abstention_rate for h in hourly]}
    top = max([v for h in hourly for v in (h.ood_rate, h.abstention_rate) if v is not None], default=0.0)
    note = "" if complete else f'<p class="muted">Over {EVERY_HOUR_MAX // 24} days: only the hours with requests are drawn.</p>'
    return note + svg.bars("Decisions per hour", labels, decisions, stacked=True) + svg.lines("Rates per hour", labels, rates, max(top, 0.05))


def _confidence(s: SummaryPublic) -> str:
    c = s.confidence
    total = sum(c.counts) or 1
    labels = [f"{c.edges[i]:.2f}" for i in range(len(c.counts))]
    series = {"recent": [n / total for n in c.counts]}
    if c.reference is not None:
        series["validation reference"] = c.reference
    return svg.bars("Confidence: recent vs validation", labels, series)


def render(s: SummaryPublic, generated: dt.datetime | None = None) -> str:
    when = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    facts = [("window", f"{s.since:%Y-%m-%d %H:%M} to {s.until:%Y-%m-%d %H:%M} UTC"), ("model", s.model or "all"),
             ("requests", str(s.requests)), ("errors", str(s.errors))]  # fmt: skip
    facts += [(f"decision: {k}", str(v)) for k, v in s.decisions.items()]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil request-log report</title><style>{STYLE}</style></head>
<body><h1>Vigil request-log report</h1><p class="muted">generated {when}</p>
{_table(facts)}
<h2>Drift against the validation data</h2>{_drift(s)}
<h2>Calibration on requests with feedback</h2>{_calibration(s)}
<h2>Confidence distribution</h2>{_confidence(s)}
<h2>Decisions and OOD rate over time</h2>{_over_time(s)}
</body></html>
"""
