"""Model cards: what is served, how its thresholds were chosen, what decisions mean."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.card_text import decision_texts, prediction_set_text, scorer_meaning
from service.context import CtxDep
from service.errors import ApiError, quoted
from service.query_params import StrictQuery
from service.schemas import ErrorResponse

router = APIRouter(tags=["models"])


class ScorerCard(BaseModel):
    name: str
    params: dict[str, Any]
    threshold: float
    criterion: str = Field(description="How the threshold was chosen, on held-out in-distribution data.")
    meaning: str = Field("", description="What the score measures, in plain words; `flagged` is score > threshold.")
    target: float | None = Field(
        None, description="What the threshold was fitted for: the target selective risk (failure) or the in-distribution pass rate (ood)."
    )
    confidence: float | None = Field(
        None, description="Failure threshold only: the probability with which its target risk is a bound (selection with guaranteed risk); null: the target is met on validation only."
    )


class ModelCard(BaseModel):
    name: str
    version: str
    method: str
    architecture: str
    class_names: list[str]
    temperature: float = Field(description="Temperature-scaling T applied to every logit sample (Guo et al. 2017).")
    failure: ScorerCard
    ood: ScorerCard
    conformal: dict[str, Any] = Field(
        description='Split conformal prediction: method, alpha, qhat (the string "Infinity" when the calibration set was '
        "too small for 1 - alpha: every class is then in every set) and what the sets mean."
    )
    metrics: dict[str, Any] = Field(
        description="Validation and test metrics recorded at training time. Units as the training code writes them: "
        "`accuracy` and `ece` in percent (99.36 = 99.36 %), `nll` and `brier` raw; `coverage`, `selective_risk` and "
        "`ood_pass_rate` as fractions (0.9972 = 99.72 %). /v1/reports/summary gives every rate as a fraction."
    )
    decisions: dict[str, str] = Field(description="What each decision means, in plain words.")
    created_at: str
    training_seconds: float


def _card(ctx: CtxDep) -> ModelCard:
    m = ctx.bundle.manifest
    return ModelCard(
        name=m.name,
        version=m.version,
        method=m.method,
        architecture=m.architecture,
        class_names=m.class_names,
        temperature=m.temperature,
        failure=ScorerCard(**m.failure.model_dump(), meaning=scorer_meaning(m.failure.name, "failure")),
        ood=ScorerCard(**m.ood.model_dump(), meaning=scorer_meaning(m.ood.name, "ood")),
        # Through the manifest's own JSON: an infinite qhat becomes "Infinity" (a plain dump
        # gives the float inf, which FastAPI's encoder silently turns into null).
        conformal={**json.loads(m.conformal.model_dump_json()), "meaning": prediction_set_text(m)},
        metrics=m.metrics,
        decisions=decision_texts(m),
        created_at=m.created_at,
        training_seconds=m.training_seconds,
    )


@router.get("/v1/models", response_model=list[ModelCard], summary="The served models")
def list_models(ctx: CtxDep, _strict: StrictQuery) -> list[ModelCard]:
    """The model this process serves, as a one-item list of model cards (see `/v1/models/{name}`)."""
    return [_card(ctx)]


@router.get("/v1/models/{name}", response_model=ModelCard, responses={404: {"model": ErrorResponse}}, summary="One model's card")
def get_model(name: str, ctx: CtxDep, _strict: StrictQuery) -> ModelCard:
    """What the model is and how far to trust it: method, classes, temperature, the failure and
    OOD scorers with their thresholds and how they were chosen, the conformal quantile, the
    validation and test metrics, and what each decision means."""
    if name != ctx.bundle.manifest.name:
        raise ApiError(404, "unknown_model", f"no model named {quoted(name)}; served: {ctx.bundle.manifest.name!r}")
    return _card(ctx)
