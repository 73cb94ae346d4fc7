"""POST /v1/requests/{request_id}/feedback: ground truth for a logged prediction.

Open like predict (the demo page posts it; API keys and rate limits apply when configured).
Repeated feedback replaces the current label and keeps the earlier ones as history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.access import ACCESS_ERRORS, ClientDep
from service.context import CtxDep
from service.db.feedback import NoPrediction, UnknownRequest, add_feedback
from service.dbcalls import DB_ERRORS
from service.errors import ApiError, quoted
from service.params import DbText
from service.query_params import StrictQuery
from service.records import client_id
from service.schemas import ErrorResponse
from service.schemas_log import FeedbackCreate, FeedbackPublic, FeedbackReceipt
from service.upload import media_type

router = APIRouter(tags=["request log"])


def require_json(request: Request) -> None:
    """A body that is not declared JSON is refused as such (415), not left for FastAPI to read
    as nothing and report as "body: Input should be a valid dictionary" (curl's `-d` sends
    application/x-www-form-urlencoded unless told otherwise)."""
    ctype = media_type(request)
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"send the feedback as application/json, not {quoted(ctype) if ctype else 'a body without Content-Type'}")


JsonBody = Annotated[None, Depends(require_json)]


@router.post(
    "/v1/requests/{request_id}/feedback",
    status_code=201,
    response_model=FeedbackReceipt,
    responses={
        400: {"model": ErrorResponse, "description": "No body (`empty_body`)."},
        404: {"model": ErrorResponse, "description": "No request with this id was logged."},
        409: {"model": ErrorResponse, "description": "The request was refused (`no_prediction`): there is nothing to label."},
        413: {"model": ErrorResponse, "description": "The body is over the size limit (`payload_too_large`)."},
        415: {"model": ErrorResponse, "description": "The body is not declared application/json (`unsupported_media_type`), or is compressed (`unsupported_encoding`)."},
        422: {"model": ErrorResponse, "description": "Label outside the served model's classes, a malformed body, or a query parameter (`unknown_parameter`: this endpoint takes none)."},
        **ACCESS_ERRORS,
        **DB_ERRORS,
    },
    summary="Attach the true label to a logged prediction",
)
async def post_feedback(request_id: DbText, body: FeedbackCreate, request: Request, ctx: CtxDep, _client: ClientDep, _json: JsonBody, _strict: StrictQuery) -> FeedbackReceipt:
    """`label` is the true class index. Posting again replaces the label; history is kept."""
    classes = ctx.bundle.manifest.class_names
    if not 0 <= body.label < len(classes):
        raise ApiError(422, "invalid_label", f"label must be a class index from 0 to {len(classes) - 1}, got {body.label}")
    who = client_id(request, ctx.settings.client_id_salt)
    try:
        row, replaced = await ctx.db.run(
            add_feedback, ctx.engine, request_id, body.label, body.note, who, ctx.writer.pending_status
        )
    except UnknownRequest as e:
        raise ApiError(404, "unknown_request", f"no logged request with id {quoted(request_id)}") from e
    except NoPrediction as e:
        raise ApiError(409, "no_prediction", f"request {quoted(request_id)} was refused, so it has no prediction to label") from e
    return FeedbackReceipt(feedback=FeedbackPublic.model_validate(row), replaced=replaced)
