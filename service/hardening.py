"""Wire issue 8's protections into an app: keys, rate limits, body caps and encodings, load shedding, headers, CORS.

Called by the app factory *before* the request-id middleware is added, so that one
stays outermost and every refusal made here still carries a request id.
"""

from __future__ import annotations

from fastapi import FastAPI

from service.auth import Keyring
from service.body_limit import BodyLimitMiddleware
from service.encoding import RefuseEncodedBodies
from service.ratelimit import TokenBuckets
from service.security_headers import SecurityHeadersMiddleware, add_cors
from service.settings import Settings
from service.shedding import Inflight, InflightLimitMiddleware

#: Room for multipart boundaries and part headers around the largest upload (one image or a batch).
MULTIPART_OVERHEAD = 64 * 1024


def install_security(app: FastAPI, settings: Settings) -> None:
    s = settings
    app.state.keyring = Keyring.from_settings(s)
    app.state.rate_limiter = TokenBuckets(s.rate_limit_per_s, s.rate_limit_burst, s.rate_limit_max_clients) if s.rate_limit_per_s > 0 else None
    app.state.inflight = Inflight(s.max_inflight)
    # add_middleware wraps what is there: the first added runs innermost.
    app.add_middleware(BodyLimitMiddleware, json_limit=s.max_json_bytes, other_limit=max(s.max_upload_bytes, s.max_batch_upload_bytes) + MULTIPART_OVERHEAD)
    app.add_middleware(RefuseEncodedBodies)
    app.add_middleware(InflightLimitMiddleware, gauge=app.state.inflight, per_client=s.max_inflight_per_client)
    add_cors(app, s.cors_origins)
    app.add_middleware(SecurityHeadersMiddleware)
