"""Admin reading of the request log: GET /v1/requests (filtered, paginated) and one request."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from service.access import ADMIN_ERRORS
from service.auth import AdminDep
from service.context import CtxDep
from service.db.queries import (
    BadCursor,
    RequestFilter,
    WindowError,
    check_window,
    decode_cursor,
    encode_cursor,
    feedback_for,
    get_request,
    list_requests,
)
from service.dbcalls import DB_ERRORS
from service.errors import ApiError
from service.params import DbText, ModelName, UtcTime, pinned
from service.query_params import StrictQuery
from service.schemas import ErrorResponse
from service.schemas_log import LoggedRequest, LoggedRequestDetail, RequestPage, logged

router = APIRouter(tags=["request log"])

@router.get(
    "/v1/requests",
    response_model=RequestPage,
    responses={
        **ADMIN_ERRORS,
        **DB_ERRORS,
        400: {"model": ErrorResponse, "description": "A cursor this service did not hand out."},  # found by the fuzzer (issue 8)
        422: {"model": ErrorResponse, "description": "A query parameter this endpoint does not take (`unknown_parameter`) or one given twice (`repeated_parameter`), a value out of range (`invalid_request`), or since not before until (`invalid_window`)."},
    },
    summary="List logged requests (admin)",
)
async def list_logged(
    request: Request,
    ctx: CtxDep,
    _admin: AdminDep,
    _strict: StrictQuery,
    since: Annotated[UtcTime | None, Query(description="Received at or after: ISO 8601 (naive means UTC) or a span back from now (90m, 24h, 7d).")] = None,
    until: Annotated[UtcTime | None, Query(description="Received before (as `since`).")] = None,
    model: Annotated[ModelName | None, Query()] = None,
    decision: Literal["accept", "abstain", "reject_ood"] | None = None,
    flagged: Annotated[bool | None, Query(description="Predictions with the failure or OOD flag up (true) or with neither (false); refusals, which have no scores, match neither.")] = None,
    has_feedback: Annotated[bool | None, Query(description="Has a current ground-truth label.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100, description="next_cursor of the previous page.")] = None,
) -> RequestPage:
    """Logged requests, newest first, each with its current feedback label. Pass `next_cursor`
    back as `cursor` for the next page; pages stay stable while new requests are logged, and
    a span (`since=24h`) is measured back from the first page's time on every page.

    A request's row is written asynchronously, after its answer: a request answered a moment
    ago may not be listed yet (`GET /v1/requests/{request_id}` answers 404 `not_stored_yet`
    with Retry-After meanwhile)."""
    try:
        after, anchor = decode_cursor(cursor) if cursor is not None else (None, None)
    except BadCursor as e:
        raise ApiError(400, "invalid_cursor", "cursor is not one this service handed out") from e
    # Spans were measured back from the moment they were parsed, which moves from page to page:
    # measured again from the listing's first moment, its window stays put (kept to the
    # millisecond, as the cursor keeps it).
    if anchor is None:
        now = dt.datetime.now(dt.UTC)
        anchor = now.replace(microsecond=now.microsecond // 1000 * 1000)
    try:
        since = pinned(request.query_params.get("since"), since, anchor)
        until = pinned(request.query_params.get("until"), until, anchor)
    except OverflowError as e:  # a span the cursor's older anchor pushes past year 1
        raise ApiError(422, "invalid_window", "a span measured back from this cursor's listing reaches before year 1") from e
    try:
        check_window(since, until)
    except WindowError as e:  # as the summary answers it
        raise ApiError(422, "invalid_window", str(e)) from e
    f = RequestFilter(since, until, model, decision, flagged, has_feedback)

    def read() -> RequestPage:
        with ctx.engine.connect() as conn:
            rows, last = list_requests(conn, f, limit, after)
            fb = feedback_for(conn, [r.request_id for r in rows])
        next_cursor = None if last is None else encode_cursor(last, anchor)
        return RequestPage(items=[logged(r, fb.get(r.request_id, [])) for r in rows], next_cursor=next_cursor)

    return await ctx.db.run(read)


@router.get(
    "/v1/requests/{request_id}",
    response_model=LoggedRequestDetail,
    responses={**ADMIN_ERRORS, **DB_ERRORS, 404: {"model": ErrorResponse, "description": "Not logged (`unknown_request`), or not stored yet: its row is still queued or spooled (`not_stored_yet`, with Retry-After)."}},
    summary="One logged request with its feedback history (admin)",
)
async def get_logged(request_id: DbText, ctx: CtxDep, _admin: AdminDep, _strict: StrictQuery) -> LoggedRequest:
    """One logged request (answered or refused) with its hash-chain fields and the whole
    feedback history.

    A request's row is written asynchronously, after its answer: for a request answered a
    moment ago this answers 404 `not_stored_yet` with Retry-After while its row is still queued
    or spooled; retry after the Retry-After header. `unknown_request` means it was never logged."""

    def read() -> LoggedRequest:
        with ctx.engine.connect() as conn:
            row = get_request(conn, request_id)
            if row is None:
                if ctx.writer.pending_status(request_id) is not None:
                    # Its own code and a Retry-After: a client must not take this 404 for good.
                    raise ApiError(404, "not_stored_yet", "not in the database yet (queued or spooled); retry shortly", {"Retry-After": "1"})
                raise ApiError(404, "unknown_request", "no logged request with this id")
            fb = feedback_for(conn, [request_id])
        return logged(row, fb.get(request_id, []), detail=True)

    return await ctx.db.run(read)

