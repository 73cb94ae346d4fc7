"""API schema of GET /v1/reports/summary (also the input of `vigil report`)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class HourPublic(BaseModel):
    hour: dt.datetime = Field(description="Start of the UTC hour.")
    requests: int = Field(description="Requests received in the hour, answered or refused.")
    predictions: int = Field(description="Requests that got a prediction (and so a decision).")
    decisions: dict[str, int]
    ood_rate: float | None = Field(description="Share of predictions decided reject_ood.")
    abstention_rate: float | None = Field(description="Share of predictions decided abstain.")


class HistogramPublic(BaseModel):
    edges: list[float] = Field(description="Bin edges, len(counts) + 1.")
    counts: list[int] = Field(description="Recent predictions per bin.")
    reference: list[float] | None = Field(description="Share of the validation reference per bin, if the bundle has one.")


class BinPublic(BaseModel):
    lower: float
    upper: float
    count: int
    confidence: float | None = Field(description="Mean confidence in the bin.")
    accuracy: float | None = Field(description="Share correct in the bin.")


class FeedbackStats(BaseModel):
    n: int = Field(description="Predictions with a current ground-truth label.")
    accuracy: float | None
    ece: float | None = Field(description="Expected calibration error, 15 bins, as a fraction (the model card shows %).")
    reliability: list[BinPublic]
    accepted: int = Field(description="Of those, predictions decided accept.")
    coverage: float | None = Field(description="accepted / n.")
    selective_risk: float | None = Field(description="Error rate among accepted predictions.")


class KsPublic(BaseModel):
    statistic: float = Field(description="Two-sample Kolmogorov-Smirnov D: the largest gap between the two CDFs.")
    p_value: float
    n_recent: int
    n_reference: int
    recent_median: float
    reference_median: float
    drifted: bool = Field(description="p < 0.01 and D >= 0.1.")


class DriftPublic(BaseModel):
    model: str | None = Field(description="name/version whose validation reference was used.")
    confidence: KsPublic | None
    ood_score: KsPublic | None
    verdict: str


class SummaryPublic(BaseModel):
    since: dt.datetime
    until: dt.datetime
    model: str | None
    requests: int
    errors: int = Field(description="Requests answered with an error status.")
    decisions: dict[str, int]
    hourly: list[HourPublic]
    confidence: HistogramPublic
    ood_score_quantiles: dict[str, float] | None = Field(description="p50/p90/p99 of recent OOD scores.")
    feedback: FeedbackStats
    drift: DriftPublic
