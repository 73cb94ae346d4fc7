"""Who may call the predict endpoints, and how often: one dependency, `ClientDep`.

Open by default; with `VIGIL_REQUIRE_API_KEY` a client (or admin) key is needed. A
presented key that matches nothing is refused whenever client keys are configured, so
a typo'd key fails loudly instead of silently running as an anonymous client. The
caller's key id (never the key) lands on `request.state.api_key_id`, where the request
log takes it as the client id, and the per-client token bucket answers 429 when empty.
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


async def require_client(request: Request) -> str | None:
    """Authenticate (when configured) and rate-limit one predict call; returns the key id or None."""
    keyring: Keyring = request.app.state.keyring
    presented = presented_key(request)
    found = keyring.match_client(presented)
    if found is None and (keyring.required or (presented and keyring.client)):
        msg = "this API key is not valid" if presented else "an API key is required (Authorization: Bearer <key> or X-API-Key)"
        log_rejection(request, 401, "unauthorized", msg)  # before the route runs: logged here
        raise ApiError(401, "unauthorized", msg, {"WWW-Authenticate": "Bearer"})
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
    is set; then they are admin endpoints."""
    if request.app.state.ctx.settings.metrics_admin_only:
        require_admin(request)


#: OpenAPI entries for an admin endpoint's refusals.
ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No valid admin API key."},
    403: {"model": ErrorResponse, "description": "A client key, not an admin key (`forbidden`), or no admin keys are configured (`admin_disabled`)."},
}

#: OpenAPI entries for the refusals above, merged into each predict route's `responses`.
ACCESS_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "API keys are required (VIGIL_REQUIRE_API_KEY) and none, or a wrong one, was sent."},
    429: {"model": ErrorResponse, "description": "This client's rate limit is spent; retry after the Retry-After header."},
}
