"""API schemas for the request log: feedback in, logged requests and pages out (admin)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.params import Note, in_utc

#: SQLite hands back naive datetimes; every stored time is UTC.
UtcDatetime = Annotated[dt.datetime, AfterValidator(in_utc)]


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"label": 7, "note": "checked by hand"}})

    # The range (0 to classes - 1) is checked by the route, so that -1 and 10 get one error code;
    # the schema still shows the lower bound.
    label: int = Field(strict=True, json_schema_extra={"minimum": 0}, description="The true class index (see the model card's class_names).")
    note: Note | None = Field(None, description="Free text kept with the label, e.g. who checked it.")


class FeedbackPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    request_id: str
    label: int = Field(validation_alias="true_label")
    note: str | None
    created_at: UtcDatetime
    replaced_at: UtcDatetime | None = Field(description="Null for the current label; set when a newer one replaced it.")
    #: Any client may label any request whose id it holds (an annotator labels others' traffic);
    #: the history says who did, so a label from an unexpected client can be spotted.
    labelled_by: str | None = Field(
        validation_alias="client_id",
        description="Who posted this label: `key:<key id>` or `ip:<salted hash>`, like the request log's client_id.",
    )


class FeedbackReceipt(BaseModel):
    feedback: FeedbackPublic
    replaced: bool = Field(description="True when this label replaced an earlier one (kept in the history).")


class LoggedRequest(BaseModel):
    """One request-log row as stored (the raw model input, if stored, is only in exports)."""

    id: int
    request_id: str
    received_at: UtcDatetime
    client_request_id: str | None
    endpoint: str
    client_id: str | None
    model_name: str | None
    model_version: str | None
    input_sha256: str | None
    input_bytes: int | None
    input_width: int | None
    input_height: int | None
    input_mode: str | None
    has_input: bool = Field(description="True when the normalised model input is stored (VIGIL_LOG_STORE_INPUTS).")
    predicted_label: int | None
    class_name: str | None
    probabilities: list[float] | None
    confidence: float | None
    predictive_entropy: float | None
    mutual_information: float | None
    failure_method: str | None
    failure_score: float | None
    failure_threshold: float | None
    failure_flagged: bool | None
    ood_method: str | None
    ood_score: float | None
    ood_threshold: float | None
    ood_flagged: bool | None
    prediction_set: list[int] | None
    decision: str | None
    latency_ms: float | None
    http_status: int
    error_code: str | None
    error_message: str | None
    writer_id: str | None = Field(description="The writer whose hash chain holds this row.")
    seq: int | None
    row_hash: str | None
    feedback: FeedbackPublic | None = Field(None, description="The current ground-truth label, if any.")


class LoggedRequestDetail(LoggedRequest):
    feedback_history: list[FeedbackPublic] = Field(description="Every label given, oldest first.")


class RequestPage(BaseModel):
    items: list[LoggedRequest] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


def logged(row: Any, feedback: list[Any], detail: bool = False) -> LoggedRequest:
    """ORM-free conversion: `row` is a result row with the request-log columns and `has_input`."""
    current = next((FeedbackPublic.model_validate(f) for f in feedback if f.replaced_at is None), None)
    fields = {**row._mapping, "feedback": current}
    if detail:
        return LoggedRequestDetail(**fields, feedback_history=[FeedbackPublic.model_validate(f) for f in feedback])
    return LoggedRequest(**fields)
