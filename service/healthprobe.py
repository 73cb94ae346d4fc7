"""The container's health check (`python -m service.healthprobe`): GET /readyz where
`vigil serve` listens, exit 0 when ready.

A wildcard bind (0.0.0.0, ::) is probed on loopback, a specific address on itself: a server
bound to one address does not answer on 127.0.0.1. The address comes from the same
settings the server reads (VIGIL_HOST, VIGIL_PORT)."""

from __future__ import annotations

import sys
import urllib.request

from service.settings import Settings

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def probe_url(host: str, port: int) -> str:
    host = WILDCARDS.get(host, host)
    if ":" in host:  # an IPv6 literal goes in brackets
        host = f"[{host}]"
    return f"http://{host}:{port}/readyz"


def main() -> int:
    settings = Settings()
    try:
        with urllib.request.urlopen(probe_url(settings.host, settings.port), timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:  # refused, timed out, or an error status (HTTPError is an OSError)
        return 1


if __name__ == "__main__":
    sys.exit(main())
