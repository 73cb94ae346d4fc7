"""Who may call the predict endpoints, and how often: one dependency, `ClientDep`.

Open by default; with `VIGIL_REQUIRE_API_KEY` a client (or admin) key is needed. A
presented key that matches no configured key is refused (401) whenever any key is
configured, on every endpoint whose OpenAPI operation lists the key schemes (the predict
endpoints, feedback, and /metrics and /v1/monitor while they are open), so a typo'd or
stale key fails loudly instead of silently running as an anonymous client. The caller's
key id (never the key) lands on `request.state.api_key_id`, where the request log takes
it as the client id, and the per-client token bucket answers 429 when empty.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request

from service.auth import Keyring, key_id, presented_key, require_admin
from service.errors import ApiError
from service.ratelimit import TokenBuckets, network_of
from service.rejections import log_rejection
from service.schemas import ErrorResponse

KEY_NOT_VALID = "this API key is not valid"
KEY_REQUIRED = "an API key is required (Authorization: Bearer <key> or X-API-Key)"


def _unauthorized(request: Request, message: str) -> ApiError:
    log_rejection(request, 401, "unauthorized", message)  # before the route runs: logged here
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def checked_key(request: Request) -> str | None:
    """The digest of the client or admin key presented, or None when none is; 401 for a key
    that matches none configured, whether or not the endpoint needs one: a client sending a
    wrong key is misconfigured, and serving it as anonymous would hide that. A server with no
    keys at all has nothing to check a key against, and ignores it."""
    keyring: Keyring = request.app.state.keyring
    presented = presented_key(request)
    found = keyring.match_client(presented)
    if presented and found is None and keyring.configured:
        raise _unauthorized(request, KEY_NOT_VALID)
    return found


async def require_client(request: Request) -> str | None:
    """Authenticate (when configured) and rate-limit one predict call; returns the key id or None."""
    keyring: Keyring = request.app.state.keyring
    found = checked_key(request)
    if found is None and keyring.required:
        raise _unauthorized(request, KEY_REQUIRED)
    kid = key_id(found) if found else None
    request.state.api_key_id = kid
    limiter: TokenBuckets | None = request.app.state.rate_limiter
    if limiter is not None:
        # In memory only, never logged: the key id, else the client's network (not hashed).
        who = kid or (network_of(request.client.host) if request.client else "anonymous")
        request.state.rate_client = who  # for charge_images
        if (refusal := _throttle(limiter.take(who), "too many requests for this client")) is not None:
            log_rejection(request, 429, refusal.code, refusal.message)
            raise refusal
    return kid


ClientDep = Annotated[str | None, Depends(require_client)]


def _throttle(wait: float, why: str) -> ApiError | None:
    if wait <= 0:
        return None
    retry = str(max(1, math.ceil(wait)))
    return ApiError(429, "rate_limited", f"{why}; retry in {retry} s", {"Retry-After": retry})


def charge_images(request: Request, images: int) -> None:
    """A request of several images costs one token each: `require_client` took the first
    (before the body was read, and kept on refusal), this takes the rest or raises 429 (the
    caller logs it)."""
    limiter: TokenBuckets | None = request.app.state.rate_limiter
    who: str | None = getattr(request.state, "rate_client", None)
    if limiter is None or who is None or images <= 1:
        return
    wait = limiter.take(who, images, prepaid=1)
    if (refusal := _throttle(wait, f"too many images for this client ({images} in this request, one token each)")) is not None:
        raise refusal

def require_admin_for_metrics(request: Request) -> None:
    """GET /metrics and the monitor's aggregate feed are open unless VIGIL_METRICS_ADMIN_ONLY
    is set; then they are admin endpoints. Open, they still refuse a key that is not valid,
    as every endpoint that documents the key schemes does."""
    if request.app.state.ctx.settings.metrics_admin_only:
        require_admin(request)
    else:
        checked_key(request)


#: The 401 of a key that matches none configured, on every endpoint that lists the key schemes.
WRONG_KEY_DOC = (
    "a key that matches no configured key (`unauthorized`: this API key is not valid), whenever any key is configured "
    "(VIGIL_API_KEYS or VIGIL_ADMIN_API_KEYS), whether or not keys are required: a key sent is checked, never ignored "
    "(a server with no keys configured ignores keys)"
)

#: OpenAPI entries for an admin endpoint's refusals.
ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No valid admin API key."},
    403: {"model": ErrorResponse, "description": "A client key, not an admin key (`forbidden`), or no admin keys are configured (`admin_disabled`)."},
}

#: OpenAPI entries for /metrics and /v1/monitor: open, or admin endpoints with VIGIL_METRICS_ADMIN_ONLY.
METRICS_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": f"With VIGIL_METRICS_ADMIN_ONLY: no valid admin API key. Open: {WRONG_KEY_DOC}."},
    403: {"model": ErrorResponse, "description": f"With VIGIL_METRICS_ADMIN_ONLY: {ADMIN_ERRORS[403]['description']}"},
}

#: OpenAPI entries for the refusals above, merged into each predict route's `responses`.
ACCESS_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": f"No key while keys are required (VIGIL_REQUIRE_API_KEY; `unauthorized`: an API key is required); or {WRONG_KEY_DOC}."},
    429: {"model": ErrorResponse, "description": "This client's rate limit is spent; retry after the Retry-After header."},
}
