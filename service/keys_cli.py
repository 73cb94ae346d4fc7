"""`vigil keys new` and `vigil keys digest`: make API keys, and configure them as digests only.

The digest is HMAC-SHA256 under VIGIL_API_KEY_PEPPER, so run these with the same
pepper the service will use. Put the printed `hmac-sha256:...` entry in VIGIL_API_KEYS
or VIGIL_ADMIN_API_KEYS; give the key itself to the client, and keep it nowhere else.
"""

from __future__ import annotations

import argparse
import secrets
import sys


def _settings_pepper() -> str:
    from service.settings import Settings

    pepper = Settings().api_key_pepper
    # The settings' own default, the development pepper: its digests match no service with a pepper of its own.
    if pepper == Settings.model_fields["api_key_pepper"].default:  # on stderr: stdout stays the entry alone, for scripts
        print(
            "warning: VIGIL_API_KEY_PEPPER is not set, so this digest uses the development pepper; "
            "a service with its own pepper will refuse the key (401): run this with the service's pepper",
            file=sys.stderr,
        )
    return pepper


def _new(args: argparse.Namespace) -> int:
    # Imported here: service.auth imports the service (torch), which `vigil --help` need not wait for.
    from service.auth import DIGEST_PREFIX, key_digest, key_id

    key = "vgl_" + secrets.token_urlsafe(32)  # 256 random bits: guessing is hopeless, so no slow hash is needed
    d = key_digest(key, _settings_pepper())
    print(f"key:    {key}\nentry:  {DIGEST_PREFIX}{d}\nkey id: {key_id(d)}")
    return 0


def _digest(args: argparse.Namespace) -> int:
    from service.auth import DIGEST_PREFIX, key_digest, key_id

    key = sys.stdin.readline().strip()  # from stdin, so the key stays out of the shell history
    if not key:
        print("give the key on standard input", file=sys.stderr)
        return 2
    if key.startswith("key:"):  # the whole line `vigil keys new` printed, pasted
        print("give the key alone (vgl_...), not the 'key:' line around it", file=sys.stderr)
        return 2
    d = key_digest(key, _settings_pepper())
    print(f"{DIGEST_PREFIX}{d}  ({key_id(d)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="API keys: make one, or print the digest entry to configure")
    cmds = keys.add_subparsers(dest="keys_command", required=True)
    cmds.add_parser("new", help="a fresh random key with its digest entry and key id").set_defaults(func=_new)
    cmds.add_parser("digest", help="read a key on stdin, print its digest entry").set_defaults(func=_digest)
