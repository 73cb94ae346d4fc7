"""What `vigil serve` checks before it starts uvicorn, so an operator reads one sentence.

The app's lifespan refuses the same conditions, but uvicorn reports a failed lifespan as
a long traceback and exit status 3. Checked here first, the command prints the reason
(bundle unreadable, database unreachable, schema not migrated) and exits with status 2;
otherwise the bundle it loaded is the one the app serves, so start-up loads it once.
"""

from __future__ import annotations

import resource
import shlex
import socket

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from models.bundle import Bundle, BundleError, load_bundle
from service.auth import Keyring
from service.db.engine import driver_reason, make_engine, missing_sqlite_file
from service.db.grants import missing_privileges, unowned_tables
from service.db.migrate import engine_revisions, newer_than_code
from service.db.spool import Spool
from service.db.writer import spool_path
from service.settings import Settings


class StartupProblem(RuntimeError):
    """Why the service cannot start, in one line."""


def preflight(settings: Settings) -> Bundle:
    """The bundle to serve, loaded once, after checking the database; `StartupProblem` if it cannot start."""
    # The app builds its keyring again; checked first, a malformed key digest stops the start
    # before --migrate touches the database (a `UsageError`: one line, status 2).
    Keyring.from_settings(settings)
    try:
        bundle = load_bundle(settings.model_dir)
    except (BundleError, OSError) as e:
        raise StartupProblem(f"cannot load the model bundle: {e}") from e  # the error names the path
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None and not settings.migrate_on_start:  # connecting would create it, empty
        raise StartupProblem(f"the database file {missing} does not exist: run `vigil db upgrade` or start with --migrate")
    spool = Spool(spool_path(settings))
    if not spool.writable():  # found out during an outage, it would lose the rows it should keep
        raise StartupProblem(f"the request-log spool {spool.path} cannot be written (VIGIL_LOG_SPOOL_PATH): rows would be lost while the database is away")
    engine = make_engine(settings.database_url)  # a bad URL or driver: `vigil`'s one-line errors (service/cli_errors.py)
    try:
        lacks, serving_role, user = [], False, ""
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                # A serving role short of a grant would fill the spool with rows the database refuses.
                lacks = missing_privileges(conn)
                serving_role = bool(unowned_tables(conn))  # it may not migrate
                user = conn.execute(text("SELECT current_user")).scalar_one()  # PGUSER's or the socket's, too
        if lacks:
            raise StartupProblem(f"the database user {user!r} lacks {', '.join(lacks)}: "
                                 f"run `vigil db grant {shlex.quote(user)}` as the schema's owner")  # fmt: skip
        upgrade = f"run `vigil db upgrade` as the schema's owner, then `vigil db grant {shlex.quote(user)}`"
        if settings.migrate_on_start and serving_role:
            raise StartupProblem(f"--migrate needs the schema's owner; {user!r} only serves: {upgrade}")
        current, head = engine_revisions(engine)  # once: the newest-schema check and its reason
        if current != head:
            if (newer := newer_than_code(settings.database_url, current)) is not None:
                raise StartupProblem(f"database {engine.url!r}: {newer}")  # --migrate could not help either
            if not settings.migrate_on_start:
                how = upgrade if serving_role else "run `vigil db upgrade` or start with --migrate"
                raise StartupProblem(f"database {engine.url!r} is not at the newest schema: {how}")
    except SQLAlchemyError as e:
        # repr(engine.url) masks the password; the driver's first line says what failed.
        raise StartupProblem(f"cannot reach the database {engine.url!r}: {driver_reason(e)}") from e
    finally:
        engine.dispose()
    return bundle


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (the OS's words), or None. Asked before the model
    loads: uvicorn found out only after loading and warming it, and said so in a log line."""
    if port == 0:  # any free port
        return None
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except OSError:  # a host that does not resolve: uvicorn's own error says so
        return None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(address)
        except OSError as e:
            return e.strerror or str(e)
    return None


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the new soft
    limit. Every connection takes a descriptor, and the soft limit is often 1024 (systemd's
    default): about a thousand idle connections refused every other client, health probes
    included, until they closed. The hard limit is the operator's ceiling, never passed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a kernel cap below the hard limit (nr_open): keep what we have
            return soft
        return target
    return soft
