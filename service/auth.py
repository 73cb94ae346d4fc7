"""API keys: admin endpoints always need an admin key; keys are kept only as peppered digests.

Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`. A key's digest is
HMAC-SHA256(pepper, key): keys are long random tokens, so a slow hash (argon2) buys
nothing against guessing, while the secret pepper makes a leaked digest list useless
on its own. Only digests are kept in memory, every candidate is compared in constant
time, and logs name a key by its id (a short prefix of its digest), never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from models.usage import UsageError
from service.errors import ApiError
from service.settings import Settings

log = logging.getLogger("vigil.auth")

#: A configured entry with this prefix is a precomputed digest (see `vigil keys digest`).
DIGEST_PREFIX = "hmac-sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str, pepper: str = "") -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def stored_digest(entry: str, pepper: str) -> str:
    """A configured key entry -> its digest: a precomputed `hmac-sha256:<hex>`, or a raw key hashed now."""
    if entry.startswith(DIGEST_PREFIX):
        digest = entry[len(DIGEST_PREFIX) :].lower()
        if not _HEX64.match(digest):
            raise ValueError(f"a configured key digest must be {DIGEST_PREFIX} followed by 64 hex digits")
        return digest
    return key_digest(entry, pepper)


def stored_digests(entries: list[str], pepper: str, variable: str) -> tuple[str, ...]:
    """Every entry of the setting `variable` as its digest. A malformed digest is the
    operator's mistake, not a bug: a `UsageError` naming the variable and the entry's place
    (`vigil serve` prints it as one line), never its value, which may be a secret."""
    digests = []
    for i, entry in enumerate(entries, 1):
        try:
            digests.append(stored_digest(entry, pepper))
        except ValueError as e:
            raise UsageError(f"invalid settings: {variable}: entry {i} of {len(entries)}: {e} (`vigil keys digest` prints one)") from None
    return tuple(digests)


def key_id(digest: str) -> str:
    return "key:" + digest[:12]


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def match_key(presented: str | None, digests: list[str] | tuple[str, ...], pepper: str = "") -> str | None:
    """The matching digest, checked against every entry in constant time, or None."""
    if not presented:
        return None
    d = key_digest(presented, pepper)
    found = None
    for candidate in digests:  # no early exit: the time does not tell which entry matched
        if hmac.compare_digest(d, candidate):
            found = candidate
    return found


@dataclass(frozen=True)
class Keyring:
    """Digests of the configured keys; built once by the app factory from settings."""

    pepper: str
    admin: tuple[str, ...]
    client: tuple[str, ...]
    #: Predict endpoints refuse requests without a valid client or admin key.
    required: bool

    @classmethod
    def from_settings(cls, s: Settings) -> Keyring:
        admin = stored_digests(s.admin_api_keys, s.api_key_pepper, "VIGIL_ADMIN_API_KEYS")
        client = stored_digests(s.api_keys, s.api_key_pepper, "VIGIL_API_KEYS")
        return cls(s.api_key_pepper, admin, client, s.require_api_key)

    @property
    def configured(self) -> bool:
        """Whether any key, client or admin, is configured: only then can a key be wrong."""
        return bool(self.client or self.admin)

    def match_admin(self, presented: str | None) -> str | None:
        return match_key(presented, self.admin, self.pepper)

    def match_client(self, presented: str | None) -> str | None:
        """An admin key is also a client key: an operator can always call predict."""
        return match_key(presented, self.client + self.admin, self.pepper)


#: The refusal of an admin endpoint without a valid admin key (also its example in /docs).
ADMIN_KEY_REQUIRED = "a valid admin API key is required"
CLIENT_KEY_ON_ADMIN = "this API key is a client key; this endpoint needs an admin key"


def require_admin(request: Request) -> str:
    """Dependency for admin endpoints; returns the admin key id (also put on request.state)."""
    keyring: Keyring = request.app.state.keyring
    if not keyring.admin:
        raise ApiError(403, "admin_disabled", "no admin keys are configured (set VIGIL_ADMIN_API_KEYS)")
    presented = presented_key(request)
    found = keyring.match_admin(presented)
    if found is None and (client := keyring.match_client(presented)) is not None:
        # Known but not allowed: 403, so the caller knows a different key is needed, not a retry.
        log.warning("refused admin request to %s %s: %s is a client key", request.method, request.url.path, key_id(client))
        raise ApiError(403, "forbidden", CLIENT_KEY_ON_ADMIN)
    if found is None:
        log.warning("refused admin request to %s %s: no valid admin key", request.method, request.url.path)
        raise ApiError(401, "unauthorized", ADMIN_KEY_REQUIRED, {"WWW-Authenticate": "Bearer"})
    kid = key_id(found)
    request.state.api_key_id = kid
    log.info("admin request %s %s by %s", request.method, request.url.path, kid)
    return kid


AdminDep = Annotated[str, Depends(require_admin)]
