"""Prometheus metrics (issue 7): one `CollectorRegistry` per app, built by `create_app`.

No global registry: two apps in one process (tests) never share counters. Figures that
already live elsewhere (queue depths, rows written) are read at scrape time by a
collector instead of being copied on every change.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

#: The endpoints whose inputs are logged, as their route templates label the series.
PREDICTION_ENDPOINTS = ("/v1/predict", "/v1/predict/batch", "/v2/models/{name}/infer")
log = logging.getLogger("vigil.metrics")

#: Refusals under load whose series exist from the start at 0 (for rate() alerts); other codes
#: appear with their first refusal.
SHEDDING_CODES = ("overloaded", "inference_backpressure", "log_backpressure", "rate_limited")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _spool_bytes(spool: Any) -> float:
    """The spool's size, or NaN (Prometheus's "unknown") when its folder cannot be read.

    The spool's own size check treats only a missing file as empty: an unreadable one must
    not look empty to the replay. A scrape, though, must not fail on it, or every other
    series (the one that would show the outage among them) goes with it.
    """
    try:
        return float(spool.size())
    except OSError as e:
        log.warning("vigil_log_spool_bytes unknown: the spool at %s cannot be read (%s)", spool.path, e)
        return math.nan


class _StateCollector(Collector):
    """Reads the live app context at scrape time; silent (no samples) before start-up."""

    def __init__(self, source: Callable[[], Any]) -> None:
        self.source = source

    def collect(
        self,
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily]:
        ctx = self.source()
        if ctx is None:
            return
        writer = ctx.writer
        yield GaugeMetricFamily(
            "vigil_log_queue_depth",
            "Request-log records waiting for the writer",
            value=writer.depth(),
        )
        yield GaugeMetricFamily(
            "vigil_log_writer_lag_seconds",
            "Age of the oldest record not yet written (0 when idle)",
            value=writer_lag(writer),
        )
        yield CounterMetricFamily(
            "vigil_log_records_written",
            "Request-log records the writer inserted into the database (replayed ones: vigil_log_records_replayed_total)",
            value=writer.written,
        )
        yield CounterMetricFamily(
            "vigil_log_records_replayed",
            "Spooled request-log records replayed into the database once it was back",
            value=getattr(writer, "replayed", 0),
        )
        fallback = getattr(writer, "fallback", None)
        if fallback is not None:
            yield CounterMetricFamily(
                "vigil_log_replay_failures",
                "Failed replays of the spool (the database still away)",
                value=fallback.replay_failures,
            )
            yield CounterMetricFamily(
                "vigil_log_records_rejected",
                "Spooled rows the database refused for their content, set aside in <spool>.rejected (alert on any: they are stored nowhere else)",
                value=fallback.spool.rejected,
            )
            yield GaugeMetricFamily(
                "vigil_log_spool_bytes",
                "Size of the spool and its rescue files: rows waiting for the database (alert when it does not shrink)",
                value=_spool_bytes(fallback.spool),
            )
        answered = getattr(ctx, "db_answered", None)
        yield GaugeMetricFamily(
            "vigil_database_answers",
            "1 when the database answered the last readiness check (/readyz) within its second, 0 when not; NaN before the first. Probes keep it fresh without traffic",
            value=float("nan") if answered is None else float(answered),
        )
        yield GaugeMetricFamily(
            "vigil_log_database_up",
            "1 while request-log inserts succeed, 0 from a failed one until a replay succeeds",
            value=1.0 if getattr(writer, "database_up", True) else 0.0,
        )
        yield CounterMetricFamily(
            "vigil_log_write_failures",
            "Failed (and retried) request-log batch inserts",
            value=writer.failures,
        )
        watchdog = getattr(writer, "watchdog", None)
        yield CounterMetricFamily(
            "vigil_log_database_stalls",
            "Times the request-log writer's database work made no progress for twice VIGIL_LOG_WRITE_TIMEOUT_S (a hung server); each breaks its open connections",
            value=watchdog.stalls if watchdog is not None else 0,
        )
        yield CounterMetricFamily(
            "vigil_log_records_spooled",
            "Records spooled to disk while the database was down",
            value=getattr(writer, "spooled", 0),
        )
        yield CounterMetricFamily(
            "vigil_log_records_adopted",
            "Records from the journals of killed processes stored by this one",
            value=getattr(writer, "adopted", 0),
        )
        journal = getattr(writer, "journal", None)
        yield GaugeMetricFamily(
            "vigil_log_journal_writable",
            "1 while queued records reach the journal (they survive a kill), 0 while it cannot be written",
            value=0.0 if journal is not None and not journal.writable else 1.0,
        )
        batcher = getattr(ctx.runtime, "batcher", None)
        if batcher is not None:
            yield GaugeMetricFamily(
                "vigil_inference_queue_depth",
                "Requests waiting for the model (micro-batcher queue)",
                value=batcher.pending(),
            )
            # The batcher keeps running totals; a summary's count and sum give the mean batch size.
            yield SummaryMetricFamily(
                "vigil_inference_batch_size",
                "Inputs per micro-batch",
                count_value=batcher.batches,
                sum_value=batcher.inputs,
            )
        remote = getattr(ctx.runtime, "remote", None)
        if remote is not None:  # VIGIL_INFERENCE_PROCESS: a rising count means the child keeps dying
            yield CounterMetricFamily(
                "vigil_inference_process_restarts",
                "Times the inference process died and was replaced",
                value=remote.restarts,
            )
            # process_resident_memory_bytes is this process's; the child holds the other torch.
            yield GaugeMetricFamily(
                "vigil_inference_process_resident_memory_bytes",
                "Resident memory of the inference process (0 while none runs)",
                value=resident_bytes(remote.pid),
            )
        manifest = ctx.bundle.manifest
        info = GaugeMetricFamily("vigil_model_info", "The served model (always 1)", labels=["name", "version", "method"])
        info.add_metric([manifest.name, manifest.version, manifest.method], 1.0)
        yield info


def resident_bytes(pid: int | None) -> float:
    """VmRSS of process `pid` from /proc (Linux), in bytes; 0 when it is gone or unknown."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def writer_lag(writer: Any) -> float:
    """Seconds since the oldest queued record was received; peeks under the queue's own lock."""
    q = writer.queue
    with q.mutex:
        head = q.queue[0] if q.queue else None
    if not isinstance(head, dict) or head.get("received_at") is None:
        return 0.0
    return max(0.0, (dt.datetime.now(dt.UTC) - head["received_at"]).total_seconds())


class Metrics:
    def __init__(self, source: Callable[[], Any]) -> None:
        """`source` returns the app context, or None before the lifespan has built it."""
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "vigil_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "vigil_http_request_duration_seconds",
            "Time to answer, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "vigil_predictions",
            "Logged inputs by endpoint, HTTP status and decision ('none' when refused)",
            ["endpoint", "status", "decision"],
            registry=r,
        )
        # Why inputs are refused: `vigil_predictions` says how many logged inputs were (by status),
        # this says which refusal, logged or not (a saturated log takes no rows), so an alert can
        # tell load shedding (overloaded, log_backpressure) from bad input.
        self.refusals = Counter(
            "vigil_refusals",
            "Refused inputs, by endpoint and error code (the response's error.code), whether or not the request log took their rows",
            ["endpoint", "code"],
            registry=r,
        )
        self.ood = Counter(
            "vigil_ood_rejections",
            "Inputs rejected as out of distribution (decision reject_ood)",
            ["endpoint"],
            registry=r,
        )
        self.abstentions = Counter(
            "vigil_abstentions",
            "Inputs the service abstained on (decision abstain)",
            ["endpoint"],
            registry=r,
        )
        r.register(_StateCollector(source))
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open fds
        PlatformCollector(registry=r)
        # Every known series from the start at 0, so rate() and absent() alerts work before the first event.
        for endpoint in PREDICTION_ENDPOINTS:
            self.ood.labels(endpoint)
            self.abstentions.labels(endpoint)
            for decision in ("accept", "abstain", "reject_ood"):
                self.predictions.labels(endpoint, "200", decision)
            for code in SHEDDING_CODES:
                self.refusals.labels(endpoint, code)

    def observe_http(
        self, route: str, method: str, status: int, seconds: float
    ) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_latency.labels(route, method).observe(seconds)

    def observe_refusal(self, endpoint: str, code: str) -> None:
        """Count one refused input; `observe_record` does for a logged one, the rejection log
        for one whose row the saturated log could not take."""
        self.refusals.labels(endpoint, code).inc()

    def observe_record(self, record: dict[str, Any]) -> None:
        """Count one request-log record (every logged input passes through here)."""
        endpoint = str(record.get("endpoint"))
        decision = record.get("decision") or "none"
        self.predictions.labels(
            endpoint, str(record.get("http_status")), decision
        ).inc()
        if code := record.get("error_code"):
            self.observe_refusal(endpoint, str(code))
        if decision == "reject_ood":
            self.ood.labels(endpoint).inc()
        elif decision == "abstain":
            self.abstentions.labels(endpoint).inc()
