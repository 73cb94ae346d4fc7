"""The `vigil` console script: one entry point, subcommands.

Service commands live here; other packages add theirs through the `vigil.commands`
entry-point group (see pyproject.toml), so this module never imports `training`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

from models.usage import int_in
from service import keys_cli

#: Exit status of a command that fails on a bug (sysexits' EX_SOFTWARE); 2 is a user's mistake.
BUG = 70
#: What a shell reports for a command that SIGPIPE ended (128 + 13): its reader closed the pipe.
SIGPIPE_STATUS = 141


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.http_protocol import VigilHttpProtocol
    from service.logs import configure_logging
    from service.malloc import fix_mmap_threshold
    from service.preflight import (
        StartupProblem,
        port_taken,
        preflight,
        raise_open_file_limit,
    )
    from service.settings import SECRETS_DIR_VARIABLE, Settings
    from service.settings_doc import unknown_secret_files, unknown_variables

    overrides: dict[str, object] = {}
    if args.model:
        overrides["model_dir"] = Path(args.model)
    if args.migrate:
        overrides["migrate_on_start"] = True
    settings = Settings(**overrides)
    for name in unknown_variables(os.environ):  # first: a misspelt setting is often why the preflight fails
        print(f"vigil serve: warning: {name} is set but no setting has that name (misspelt?); see docs/settings.md", file=sys.stderr)
    for name in unknown_secret_files(os.environ.get(SECRETS_DIR_VARIABLE)):
        print(f"vigil serve: warning: {SECRETS_DIR_VARIABLE} holds {name}, which no setting reads (misspelt?); see docs/settings.md", file=sys.stderr)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port  # --port 0 (any free port) is a choice
    if (taken := port_taken(host, port)) is not None:
        print(f"vigil serve: cannot listen on {host}:{port} ({taken}): stop what listens there, or give another --port", file=sys.stderr)
        return 2
    try:
        bundle = preflight(settings)
    except StartupProblem as e:
        print(f"vigil serve: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)  # JSON lines by default (issue 7)
    raise_open_file_limit()  # one descriptor per connection: the common soft limit of 1024 is few
    if settings.inference_process:
        # Before any upload is decoded: large decodes must not stay resident. Only where torch
        # computes in the child process (spawned: glibc's defaults again), since every tensor
        # over the threshold then costs a mapping of its own: a batch of 64 through the shipped
        # ensemble took 75-80 ms instead of 45-55 with it (measured 2026-11-30, even at 4 MiB).
        fix_mmap_threshold()
    # No access log by default: a line per request costs throughput, and the request log has every request.
    uvicorn.run(
        create_app(settings, bundle),
        host=host,
        port=port,
        log_config=None,
        access_log=settings.access_log,
        # A stalled upload must not hold the process past the orchestrator's SIGKILL, which
        # would skip the request log's final drain.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        # The API's error shape for a request uvicorn cannot parse, and a bound on its head.
        http=VigilHttpProtocol,
    )
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.migrate import upgrade
    from service.settings import Settings

    url = args.url or Settings().database_url
    upgrade(url)
    print(f"database at {make_url(url)!r} upgraded to head")  # repr masks the password
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.engine import missing_sqlite_file
    from service.db.migrate import newer_than_code, revisions
    from service.settings import Settings

    # With --check a deploy script can gate on the answer: 1 unless the schema is this code's head.
    not_at_head = 1 if args.check else 0
    url = args.url or Settings().database_url
    if (missing := missing_sqlite_file(url)) is not None:  # connecting would create it
        print(f"{make_url(url)!r}: the file {missing} does not exist (no schema): run `vigil db upgrade`")
        return not_at_head
    current, head = revisions(url)
    if (newer := newer_than_code(url, current)) is not None:
        print(f"{make_url(url)!r}: {newer}")
        return not_at_head
    state = "at head" if current == head else f"behind head {head}: run `vigil db upgrade`"
    print(f"{make_url(url)!r}: revision {current or 'none (empty)'}, {state}")
    return 0 if current == head else not_at_head


def _db_history(args: argparse.Namespace) -> int:
    from service.db.migrate import history
    from service.settings import Settings

    print("\n".join(history(args.url or Settings().database_url)))
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.migrate import downgrade, revisions
    from service.settings import Settings

    url = args.url or Settings().database_url
    if not args.yes:
        print(
            f"vigil db downgrade: this drops what the undone migrations added (to `base`: the whole request log) "
            f"in {make_url(url)!r}. Stop every service on it first, then run again with --yes.",
            file=sys.stderr,
        )
        return 2
    downgrade(url, args.revision)
    print(f"database at {make_url(url)!r} downgraded to revision {revisions(url)[0] or 'none (empty)'}")
    return 0


def _db_grant(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.grants import grant_service_role
    from service.settings import Settings

    url = args.url or Settings().database_url
    password = None
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            print(f"vigil db grant: {args.password_env} is not set (--password-env names the variable holding the role's password)", file=sys.stderr)
            return 2
    for statement in grant_service_role(url, args.role, password):
        print(statement)
    served = make_url(url).set(username=args.role, password=None).render_as_string(hide_password=True)
    print(f"role {args.role!r} holds what `vigil serve` needs and no more: point the replicas' VIGIL_DATABASE_URL at {served} "
          "(with the role's password), and grant again after every `vigil db upgrade`")  # fmt: skip
    return 0


#: The commands defined here. Any other, or none (`vigil --help`), loads the entry points'
#: commands too, whose modules import torch and the training code (seconds on a small CPU):
#: `vigil db upgrade` in a migration job or an init container need not wait for them.
BUILT_IN = ("serve", "db", "keys")


def _needs_plugins(argv: list[str]) -> bool:
    command = next((a for a in argv if not a.startswith("-")), None)
    return command not in BUILT_IN


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The CLI for `argv`: the built-in commands, and the entry points' unless `argv` names a
    built-in one."""
    parser = argparse.ArgumentParser(prog="vigil", description="Uncertainty-aware image classification service")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--model", default=None, help="bundle folder (default: the shipped bundle, or VIGIL_MODEL_DIR)")
    p.add_argument("--host", default=None, help="address to listen on (default VIGIL_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int_in(0, 65535, "port"), default=None,
                   help="port to listen on, 0-65535; 0: any free one, named in the start-up log (default VIGIL_PORT, 8000)")
    p.add_argument("--migrate", action="store_true", help="apply database migrations at start")
    p.set_defaults(func=_serve)
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply Alembic migrations up to head")
    up.add_argument("--url", default=None, help="database URL (default VIGIL_DATABASE_URL)")
    up.set_defaults(func=_db_upgrade)
    cur = db.add_parser("current", help="the database's revision, and whether it is the newest")
    cur.add_argument("--url", default=None, help="database URL (default VIGIL_DATABASE_URL)")
    cur.add_argument("--check", action="store_true", help="exit with status 1 unless the schema is at head (for deploy scripts)")
    cur.set_defaults(func=_db_current)
    hist = db.add_parser("history", help="every migration, newest first")
    hist.add_argument("--url", default=None, help="database URL (default VIGIL_DATABASE_URL)")
    hist.set_defaults(func=_db_history)
    down = db.add_parser("downgrade", help="undo migrations down to REVISION (`-1`: the last one; `base`: all)")
    down.add_argument("revision")
    down.add_argument("--yes", action="store_true", help="confirm: the data of the undone migrations is dropped")
    down.add_argument("--url", default=None, help="database URL (default VIGIL_DATABASE_URL)")
    down.set_defaults(func=_db_downgrade)
    grant = db.add_parser("grant", help="give ROLE what `vigil serve` needs on PostgreSQL and nothing more (run as the owner, after upgrade)")
    grant.add_argument("role", help="the PostgreSQL role the replicas connect as (made by --password-env if missing)")
    grant.add_argument("--url", default=None, help="the schema owner's database URL (default VIGIL_DATABASE_URL)")
    grant.add_argument("--password-env", default=None, metavar="VARIABLE",
                       help="create ROLE with LOGIN and the password in this environment variable (or set an existing role's)")  # fmt: skip
    grant.set_defaults(func=_db_grant)
    keys_cli.register(sub)  # issue 8: `vigil keys new|digest`
    if _needs_plugins(argv):
        for ep in entry_points(group="vigil.commands"):
            ep.load()(sub)
    return parser


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser that `args` came from, e.g. `vigil db current`'s."""
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction) and (name := getattr(args, action.dest, None)) in action.choices:
            return chosen_parser(action.choices[name], args)
    return parser


def debugging() -> bool:
    """VIGIL_DEBUG, read with the words pydantic takes for the settings' bools (1/0, true/false,
    yes/no, on/off, t/f, y/n, any case), as docs/settings.md says; any other value is off.
    Checked by hand it was on for anything but "", 0, false and no: `VIGIL_DEBUG=off` too."""
    from pydantic import (  # on the way out only: `vigil --help` stays fast
        TypeAdapter,
        ValidationError,
    )

    try:
        return TypeAdapter(bool).validate_python(os.environ.get("VIGIL_DEBUG", ""))
    except ValidationError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # refused by the command's own parser: its usage, not the top level's list of commands
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then the BrokenPipeError below
        return status
    except BrokenPipeError:
        # The reader went away (`vigil keys new | head -1`): not a bug. Quiet, with the status a
        # shell gives a command SIGPIPE ended, and stdout pointed at /dev/null so that Python's
        # own flush at exit does not fail on the closed pipe too.
        with contextlib.suppress(OSError, ValueError):  # (a stdout without a descriptor: nothing to flush)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS
    except Exception as e:  # noqa: BLE001 -- every failure ends in a status that says whose it is
        # Imported only on the way out, so that `vigil --help` stays fast.
        from service.cli_errors import user_error

        message = user_error(e)
        if message is None or debugging():
            traceback.print_exc()
        if message is None:
            # Not Python's exit status 1, which `vigil replay` and `vigil audit verify` give a
            # failed audit: a script must tell "the log does not check out" from "vigil broke".
            print(f"vigil {args.command}: internal error (a bug, not a mistake of yours): {type(e).__name__}; exit status {BUG}", file=sys.stderr)
            return BUG
        print(f"vigil {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
