"""Pipeline output for one input -> the v1 response and the matching log fields."""

from __future__ import annotations

from typing import Any

from models.manifest import Manifest
from models.pipeline import PipelineOutput, RowValues
from service.policy import decide
from service.schemas import (
    ModelRef,
    Prediction,
    PredictionPublic,
    SampleSpread,
    ScorePublic,
    UncertaintyPublic,
)


def compact(x: float) -> float:
    """`x` to 6 significant digits: short JSON, yet a tiny probability stays above 0, so a
    client's log loss or entropy of the vector stays finite (6 decimals made it 0.0)."""
    return float(f"{x:.6g}")


def build_prediction(out: PipelineOutput, manifest: Manifest, request_id: str, latency_ms: float) -> PredictionPublic:
    """`out` holds one input (batch dimension 1)."""
    # Plain Python values, made per batch on the torch thread (PipelineOutput.with_values).
    v = out.row_values()[0]
    failure = ScorePublic(
        method=manifest.failure.name,
        score=v.failure_score,
        threshold=manifest.failure.threshold,
        flagged=v.failure_score > manifest.failure.threshold,
    )
    ood = ScorePublic(
        method=manifest.ood.name,
        score=v.ood_score,
        threshold=manifest.ood.threshold,
        flagged=v.ood_score > manifest.ood.threshold,
    )
    return PredictionPublic(
        request_id=request_id,
        model=ModelRef(name=manifest.name, version=manifest.version, method=manifest.method),
        prediction=Prediction(label=v.label, class_name=manifest.class_names[v.label]),
        probabilities=[compact(p) for p in v.probs],
        confidence=v.probs[v.label],
        uncertainty=UncertaintyPublic(
            predictive_entropy=v.predictive_entropy,
            mutual_information=None if v.sample_count == 1 else v.mutual_information,
        ),
        failure=failure,
        ood=ood,
        prediction_set=v.prediction_set,
        decision=decide(ood.flagged, failure.flagged),
        latency_ms=round(latency_ms, 3),
        samples=sample_spread(v),
    )


def sample_spread(v: RowValues) -> SampleSpread | None:
    """Min/max per class over the samples, and each sample's vote for the predicted class."""
    if v.sample_count < 2:
        return None
    return SampleSpread(
        count=v.sample_count,
        min=[compact(x) for x in v.sample_min],
        max=[compact(x) for x in v.sample_max],
        predicted_class=[compact(x) for x in v.sample_votes],
    )


def log_fields(p: PredictionPublic) -> dict[str, Any]:
    return {
        "predicted_label": p.prediction.label,
        "class_name": p.prediction.class_name,
        "probabilities": p.probabilities,
        "confidence": p.confidence,
        "predictive_entropy": p.uncertainty.predictive_entropy,
        "mutual_information": p.uncertainty.mutual_information,
        "failure_method": p.failure.method,
        "failure_score": p.failure.score,
        "failure_threshold": p.failure.threshold,
        "failure_flagged": p.failure.flagged,
        "ood_method": p.ood.method,
        "ood_score": p.ood.score,
        "ood_threshold": p.ood.threshold,
        "ood_flagged": p.ood.flagged,
        "prediction_set": p.prediction_set,
        "decision": p.decision,
        "latency_ms": p.latency_ms,
    }
