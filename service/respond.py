"""Pipeline output for one input -> the v1 response and the matching log fields."""

from __future__ import annotations

from typing import Any

from models.manifest import Manifest
from models.pipeline import PipelineOutput
from service.policy import decide
from service.schemas import (
    ModelRef,
    Prediction,
    PredictionPublic,
    SampleSpread,
    ScorePublic,
    UncertaintyPublic,
)


def build_prediction(out: PipelineOutput, manifest: Manifest, request_id: str, latency_ms: float) -> PredictionPublic:
    """`out` holds one input (batch dimension 1)."""
    # One .tolist() per tensor: indexing a tensor element by element costs a dispatch each.
    row = out.probs[0].tolist()
    label = max(range(len(row)), key=row.__getitem__)
    failure_score, ood_score = float(out.failure_score[0]), float(out.ood_score[0])
    failure = ScorePublic(
        method=manifest.failure.name,
        score=failure_score,
        threshold=manifest.failure.threshold,
        flagged=failure_score > manifest.failure.threshold,
    )
    ood = ScorePublic(
        method=manifest.ood.name,
        score=ood_score,
        threshold=manifest.ood.threshold,
        flagged=ood_score > manifest.ood.threshold,
    )
    single = out.sample_probs.shape[0] == 1
    return PredictionPublic(
        request_id=request_id,
        model=ModelRef(name=manifest.name, version=manifest.version, method=manifest.method),
        prediction=Prediction(label=label, class_name=manifest.class_names[label]),
        probabilities=[round(p, 6) for p in row],
        confidence=row[label],
        uncertainty=UncertaintyPublic(
            predictive_entropy=float(out.predictive_entropy[0]),
            mutual_information=None if single else float(out.mutual_information[0]),
        ),
        failure=failure,
        ood=ood,
        prediction_set=out.prediction_sets[0].nonzero().flatten().tolist(),
        decision=decide(ood.flagged, failure.flagged),
        latency_ms=round(latency_ms, 3),
        samples=sample_spread(out, label),
    )


def sample_spread(out: PipelineOutput, label: int, keep: int = 64) -> SampleSpread | None:
    """Min/max per class over the samples, and each sample's vote for the predicted class."""
    sp = out.sample_probs[:, 0]  # [S, K]
    if sp.shape[0] < 2:
        return None
    return SampleSpread(
        count=int(sp.shape[0]),
        min=[round(v, 6) for v in sp.min(0).values.tolist()],
        max=[round(v, 6) for v in sp.max(0).values.tolist()],
        predicted_class=[round(v, 6) for v in sp[:keep, label].tolist()],
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
