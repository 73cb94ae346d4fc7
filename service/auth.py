"""API keys: admin endpoints always need an admin key; keys are compared as SHA-256 digests.

Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Only digests are
kept in memory and compared in constant time; logs name a key by its id (a short
prefix of its digest), never by the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import ApiError


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    return "key:" + digest[:12]


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def match_key(presented: str | None, digests: list[str]) -> str | None:
    """The matching digest, checked against every entry in constant time, or None."""
    if not presented:
        return None
    d = key_digest(presented)
    found = None
    for candidate in digests:
        if hmac.compare_digest(d, candidate):
            found = candidate
    return found


def require_admin(request: Request) -> str:
    """Dependency for admin endpoints; returns the admin key id."""
    digests = request.app.state.ctx.admin_key_digests
    if not digests:
        raise ApiError(403, "admin_disabled", "no admin keys are configured (set VIGIL_ADMIN_API_KEYS)")
    found = match_key(presented_key(request), digests)
    if found is None:
        raise ApiError(401, "unauthorized", "a valid admin API key is required", {"WWW-Authenticate": "Bearer"})
    return key_id(found)


AdminDep = Annotated[str, Depends(require_admin)]
