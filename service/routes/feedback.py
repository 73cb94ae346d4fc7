"""POST /v1/requests/{request_id}/feedback: ground truth for a logged prediction.

Open like predict (the demo page posts it; API keys and rate limits apply when configured).
Repeated feedback replaces the current label and keeps the earlier ones as history.

The body is read by the route, not by FastAPI: FastAPI waits for a body without end, so a
client that sent its headers and went quiet held its connection open for good, while the
prediction routes answer it 408 `body_timeout`. Read here, it is read the same way, and only
after the key, content type and query are checked.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

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
from service.upload import BodyPace, media_type, read_body

router = APIRouter(tags=["request log"])


def require_json(request: Request) -> None:
    """A body that is not declared JSON is refused as such (415), not left for FastAPI to read
    as nothing and report as "body: Input should be a valid dictionary" (curl's `-d` sends
    application/x-www-form-urlencoded unless told otherwise)."""
    ctype = media_type(request)
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"send the feedback as application/json, not {quoted(ctype) if ctype else 'a body without Content-Type'}")


JsonBody = Annotated[None, Depends(require_json)]

#: The body in /docs, as FastAPI showed it when it read the body (service.docs adds the schema).
FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{FeedbackCreate.__name__}"}}}}
}


def _parse_json(raw: bytes) -> Any:
    """The body as JSON, or a refusal with the status and code FastAPI's answer had when it read
    the body (clients rely on them): 400 `empty_body`, 422 `invalid_json` (400 on /v2)."""
    if not raw:
        raise ApiError(400, "empty_body", "the request has no body; send a JSON object")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {e.msg} (at character {e.pos})") from e
    except (ValueError, RecursionError) as e:  # bytes that are no Unicode, an integer of 4,300+ digits, deep nesting
        why = "it is nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {why}") from e


async def feedback_body(request: Request, pace: BodyPace) -> FeedbackCreate:
    """The body, read through the uploads' idle timeout (408), then checked as FastAPI checked it."""
    doc = _parse_json(await read_body(request, pace))
    if not isinstance(doc, dict):  # pydantic would name the Python types ("a valid dictionary")
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    try:
        return FeedbackCreate.model_validate(doc)
    except ValidationError as e:
        # Through the app's handler for FastAPI's own validation errors, so the messages stay
        # as they were ("body.note: ...", `unknown_field` for an extra key).
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from e


@router.post(
    "/v1/requests/{request_id}/feedback",
    status_code=201,
    response_model=FeedbackReceipt,
    responses={
        400: {"model": ErrorResponse, "description": "No body (`empty_body`)."},
        404: {"model": ErrorResponse, "description": "No request with this id was logged (`unknown_request`)."},
        408: {"model": ErrorResponse, "description": "No byte of the body for VIGIL_BODY_IDLE_TIMEOUT_S (`body_timeout`)."},
        409: {"model": ErrorResponse, "description": "The request was refused (`no_prediction`): there is nothing to label."},
        413: {"model": ErrorResponse, "description": "The body is over the size limit (`payload_too_large`)."},
        415: {"model": ErrorResponse, "description": "The body is not declared application/json (`unsupported_media_type`), or is compressed (`unsupported_encoding`)."},
        422: {
            "model": ErrorResponse,
            "description": "A label outside the served model's classes (`invalid_label`); a body that is not JSON (`invalid_json`: 422 here, "
            "where /v2 answers 400); a field it does not take (`unknown_field`); a body that is not a JSON object, a field of the wrong "
            "type or a note too long, or a request id that is not valid text (`invalid_request`); or a query parameter "
            "(`unknown_parameter`: this endpoint takes none; `repeated_parameter`).",
        },
        **ACCESS_ERRORS,
        **DB_ERRORS,
    },
    openapi_extra=FEEDBACK_BODY,
    summary="Attach the true label to a logged prediction",
)
async def post_feedback(request_id: DbText, request: Request, ctx: CtxDep, _client: ClientDep, _json: JsonBody, _strict: StrictQuery) -> FeedbackReceipt:
    """`label` is the true class index. Posting again replaces the label; history is kept."""
    body = await feedback_body(request, BodyPace.of(ctx.settings))
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
