"""API schemas (pydantic): what clients send and receive. Field descriptions feed /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.policy import MEANINGS


class ModelRef(BaseModel):
    name: str = Field(description="Bundle name from its manifest.")
    version: str = Field(description="Bundle version from its manifest.")
    method: str = Field(description="Uncertainty method: deterministic, mc_dropout, ensemble, variational, laplace.")


class Prediction(BaseModel):
    label: int = Field(description="Index of the most probable class.")
    class_name: str = Field(description="Human name of that class.")


class UncertaintyPublic(BaseModel):
    predictive_entropy: float = Field(description="Entropy of the averaged predictive (nats): total uncertainty.")
    mutual_information: float | None = Field(
        description="Epistemic part of the entropy (nats): disagreement between samples/members. Null for single-sample models."
    )


class ScorePublic(BaseModel):
    method: str = Field(description="Scorer that produced the score.")
    score: float = Field(description="Higher means more likely the bad thing (wrong prediction / out of distribution).")
    threshold: float = Field(description="Fitted on held-out in-distribution data; flagged when score > threshold.")
    flagged: bool = Field(description="score > threshold.")


class SampleSpread(BaseModel):
    """How far the model's samples (ensemble members, MC-dropout passes...) disagree (issue 7).

    Sampled models draw the same S masks or weights at every call, from the bundle's seed,
    so an image gets the same samples, and the same answer, alone, in a batch or later (up to
    float32 rounding: a batch runs other kernels, so the 6th significant digit may differ).
    """

    count: int = Field(description="Number of samples S behind the averaged probabilities.")
    min: list[float] = Field(description="Per class, the smallest calibrated probability any sample gave.")
    max: list[float] = Field(description="Per class, the largest calibrated probability any sample gave.")
    predicted_class: list[float] = Field(description="Each sample's probability for the predicted class (at most 64 samples).")


class PredictionPublic(BaseModel):
    request_id: str = Field(
        description="Unique id of this request, as logged (feedback and /v1/requests/{request_id} take it); also in the "
        "X-Vigil-Request-ID response header. X-Request-ID echoes the client's own id when it sent a valid one (8-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'; "
        "kept in the log beside this one), else this one."
    )
    model: ModelRef
    prediction: Prediction
    probabilities: list[float] = Field(
        description="Calibrated (temperature-scaled) class probabilities, averaged over samples; to 6 significant digits "
        "(never rounded to 0, so their sum may differ from 1 by ~1e-6). `confidence` is the predicted class's, unrounded."
    )
    confidence: float = Field(description="Calibrated probability of the predicted class.")
    uncertainty: UncertaintyPublic
    failure: ScorePublic = Field(description="Is this prediction likely wrong? (misclassification detection)")
    ood: ScorePublic = Field(description="Is this input unlike the training data? (out-of-distribution detection)")
    prediction_set: list[int] = Field(description="Conformal prediction set: contains the true class with probability >= 1 - alpha.")
    decision: Literal["accept", "abstain", "reject_ood"] = Field(
        description="reject_ood if ood.flagged, else abstain if failure.flagged, else accept. "
        + " ".join(f"**{k}**: {v}" for k, v in MEANINGS.items())
    )
    latency_ms: float = Field(description="Server-side time from receipt to answer, in milliseconds; in a batch, the whole batch's (each item and its log row carry the same figure).")
    samples: SampleSpread | None = Field(
        None, description="Spread of the samples behind the average; null for single-sample (deterministic) models."
    )


#: The request id in every documented error example (schemas, per-route examples, /v2).
EXAMPLE_ERROR_ID = "9b2f0c1d7e6a4f5b8c3d2e1f0a9b8c7d"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code, e.g. not_an_image.")
    message: str = Field(description="Human-readable explanation.")
    request_id: str | None = Field(description="Id of the failed request, as logged.")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"error": {"code": "not_an_image", "message": "the body is not a recognised image", "request_id": EXAMPLE_ERROR_ID}}
        }
    )

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "not_ready"]
    checks: dict[str, bool] = {}


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route: each status documented with the one error shape."""
    return {status: {"model": ErrorResponse, "description": d} for status, d in descriptions.items()}
