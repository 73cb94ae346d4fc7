"""API schemas of POST /v1/predict/batch: one result per image, in the order sent."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.schemas import ErrorDetail, PredictionPublic


class BatchItemError(BaseModel):
    """An image of the batch that could not be classified; the others are unaffected."""

    status: int = Field(description="The HTTP status this image alone would have got from /v1/predict (4xx).")
    error: ErrorDetail


class BatchPredictionPublic(BaseModel):
    request_id: str = Field(description="Id of the batch request (X-Request-ID). Item i is logged as `<request_id>-<i>`.")
    results: list[PredictionPublic | BatchItemError] = Field(
        description="One entry per image, in upload order: a prediction (same shape as /v1/predict), "
        "or `{status, error}` for an image refused on its own (empty, too large, not an image or in a format not accepted, corrupt): "
        "the status and code /v1/predict would answer it with."
    )
