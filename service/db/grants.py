"""Least privilege on PostgreSQL: what a serving role needs, granted by the schema's owner.

The service only appends request-log rows, reads them back, and records feedback (an insert,
and an update that marks the label it replaces). A replica connecting as the owner could also
delete or rewrite the log, drop its tables, or create new ones: whoever takes over a replica
(or a bug in it) could then erase exactly the record the log exists to keep. `vigil db grant
ROLE`, run with the owner's URL after every `vigil db upgrade`, gives ROLE these privileges and
no others, then checks that ROLE holds all of them and none of the forbidden ones (a grant by
a non-owner is a silent no-op in PostgreSQL; a membership can carry more). `vigil serve`
checks the same list at start (`missing_privileges`), so a role short of one is refused in one
line instead of losing its rows.
"""

from __future__ import annotations

from itertools import groupby

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from models.usage import UsageError
from service.db.engine import driver_reason, make_engine

#: (table, privilege, column or None): what `vigil serve` does, and nothing else. The log is
#: append-only for the service; feedback's only update is `replaced_at` (service.db.feedback);
#: Alembic's version table is read at start.
REQUIRED: tuple[tuple[str, str, str | None], ...] = (
    ("alembic_version", "SELECT", None),
    ("request_log", "SELECT", None),
    ("request_log", "INSERT", None),
    ("feedback", "SELECT", None),
    ("feedback", "INSERT", None),
    ("feedback", "UPDATE", "replaced_at"),
)
#: The tables whose ids come from a sequence the inserts must draw from.
SERIAL_IDS: tuple[str, ...] = ("request_log", "feedback")
#: Table privileges the serving role must not hold by any path (a direct grant, a membership,
#: PUBLIC). A TRIGGER could rewrite the rows it inserts. UPDATE is checked column by column too
#: (`UPDATE (row_hash)` rewrites the chain as well as a table-wide UPDATE), but for the one
#: column the list grants.
FORBIDDEN: tuple[tuple[str, str], ...] = tuple(
    (table, privilege)
    for table in ("request_log", "feedback", "alembic_version")
    for privilege in ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
)
#: What deploy/env.example ships: never a role's password.
PLACEHOLDER_PREFIX = "change-me"


def _qualified(conn: Connection, schema: str, name: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}"


def grant_statements(conn: Connection, role: str, schema: str) -> list[str]:
    """The REVOKEs and GRANTs that leave `role` exactly `REQUIRED` on `schema`'s tables."""
    quote = conn.dialect.identifier_preparer.quote
    who = quote(role)
    tables = sorted({table for table, _, _ in REQUIRED})
    out = [f"REVOKE CREATE ON SCHEMA {quote(schema)} FROM {who}", f"GRANT USAGE ON SCHEMA {quote(schema)} TO {who}"]
    out += [f"REVOKE ALL ON {_qualified(conn, schema, t)} FROM {who}" for t in tables]  # what an earlier grant left
    for table, rows in groupby(sorted(REQUIRED, key=lambda r: r[0]), key=lambda r: r[0]):
        privileges = ", ".join(p if c is None else f"{p} ({quote(c)})" for _, p, c in rows)
        out.append(f"GRANT {privileges} ON {_qualified(conn, schema, table)} TO {who}")
    out += [f"GRANT USAGE ON SEQUENCE {sequence} TO {who}" for sequence in _sequences(conn, schema)]  # quoted by PostgreSQL
    return out


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar_one() is not None


def _sequences(conn: Connection, schema: str) -> list[str]:
    """The id sequences of the tables that exist (a database being migrated lacks some)."""
    tables = [_qualified(conn, schema, t) for t in SERIAL_IDS]
    found = (conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t}).scalar_one() for t in tables if _exists(conn, t))
    return [s for s in found if s is not None]


def missing_privileges(conn: Connection, role: str | None = None) -> list[str]:
    """What `role` (default: the connected user) lacks of `REQUIRED` on the current schema, in
    words; tables that do not exist are skipped (the schema check says "not migrated")."""
    who = role if role is not None else conn.execute(text("SELECT current_user")).scalar_one()
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    missing = []
    if not conn.execute(text("SELECT has_schema_privilege(:r, :s, 'USAGE')"), {"r": who, "s": schema}).scalar_one():
        return [f"USAGE on schema {schema}"]
    for table, privilege, column in REQUIRED:
        name = _qualified(conn, schema, table)
        if not _exists(conn, name):
            continue
        if column is None:
            held = conn.execute(text("SELECT has_table_privilege(:r, :t, :p)"), {"r": who, "t": name, "p": privilege}).scalar_one()
        else:
            held = conn.execute(text("SELECT has_column_privilege(:r, :t, :c, :p)"), {"r": who, "t": name, "c": column, "p": privilege}).scalar_one()
        if not held:
            missing.append(f"{privilege} on {table}" + ("" if column is None else f" ({column})"))
    for sequence in _sequences(conn, schema):
        if not conn.execute(text("SELECT has_sequence_privilege(:r, :s, 'USAGE')"), {"r": who, "s": sequence}).scalar_one():
            missing.append(f"USAGE on sequence {sequence}")
    return missing


def excess_privileges(conn: Connection, role: str) -> list[str]:
    """The `FORBIDDEN` privileges `role` holds, by whatever path, and CREATE on the schema."""
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    allowed = {(t, c) for t, p, c in REQUIRED if p == "UPDATE" and c is not None}
    held = []
    if conn.execute(text("SELECT has_schema_privilege(:r, :s, 'CREATE')"), {"r": role, "s": schema}).scalar_one():
        held.append(f"CREATE on schema {schema}")
    for table, privilege in FORBIDDEN:
        name = _qualified(conn, schema, table)
        args = {"r": role, "t": name, "p": privilege}
        if conn.execute(text("SELECT has_table_privilege(:r, :t, :p)"), args).scalar_one():
            held.append(f"{privilege} on {table}")
        elif privilege == "UPDATE":
            columns = conn.execute(text("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"), args).scalars()
            held += [f"UPDATE on {table} ({c})" for c in columns
                     if (table, c) not in allowed and conn.execute(text("SELECT has_column_privilege(:r, :t, :c, 'UPDATE')"), {**args, "c": c}).scalar_one()]  # fmt: skip
    return held


def unowned_tables(conn: Connection, schema: str | None = None) -> list[str]:
    """The service's tables that exist and the connected user does not own (nor is a member of
    their owner): the ones it can neither grant on nor migrate."""
    schema = schema or conn.execute(text("SELECT current_schema()")).scalar_one()
    owns = text("SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass(:t)")
    found = {table: conn.execute(owns, {"t": _qualified(conn, schema, table)}).scalar_one_or_none() for table in sorted({t for t, _, _ in REQUIRED})}
    return [table for table, held in found.items() if held is False]


def _check_owner(conn: Connection, schema: str) -> None:
    """Refuse a runner who does not own the tables: PostgreSQL would grant nothing, with a mere
    warning, and revoke nothing either."""
    absent = [t for t in sorted({t for t, _, _ in REQUIRED}) if not _exists(conn, _qualified(conn, schema, t))]
    if refused := absent + unowned_tables(conn, schema):
        raise UsageError(f"this user does not own {refused[0]}: run `vigil db grant` as the schema's owner (the URL `vigil db upgrade` used)")


def _check_role(conn: Connection, role: str, must_exist: bool = True) -> None:
    """Refuse a role that cannot be held to the list: the connected user, a superuser."""
    if role == conn.execute(text("SELECT current_user")).scalar_one():
        raise UsageError(f"{role!r} is the user this command connects as (the schema's owner): grant to the role the replicas connect as")
    row = conn.execute(text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if row is None and must_exist:
        raise UsageError(f"no role {role!r} in this PostgreSQL: create it first, or pass --password-env VARIABLE")
    if row is not None and row[0]:
        raise UsageError(f"{role!r} is a superuser (or bypasses row security): no grant limits it; serve as an ordinary role")


def _ensure_login(conn: Connection, role: str, password: str) -> str:
    """Create `role` with LOGIN and `password`, or set an existing one's password: the
    deployment's secret stays the one truth, on a fresh database volume or an old one. The
    password travels as a SCRAM verifier made here, so the server's log of a failed statement
    (or of every DDL statement) never holds it."""
    from psycopg import sql

    raw = conn.connection.dbapi_connection
    assert raw is not None
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is not None
    verb = "ALTER" if exists else "CREATE"
    verifier = raw.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()  # type: ignore[attr-defined]
    statement = sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))
    conn.exec_driver_sql(statement.as_string(raw))
    return f"{verb} ROLE {conn.dialect.identifier_preparer.quote(role)} LOGIN PASSWORD '<SCRAM verifier>'"


def grant_service_role(url: str, role: str, password: str | None = None) -> list[str]:
    """Leave `role` exactly what the service needs on the database at `url` (the owner's); with
    `password`, create the role (or set its password) first. Returns the statements run
    (passwords elided). Everything happens in one transaction: a refusal changes nothing."""
    from service.db.migrate import is_at_head

    if not url.startswith("postgresql"):
        raise UsageError("vigil db grant is for PostgreSQL: SQLite has no roles (protect its file instead)")
    if not role or role.startswith("pg_"):
        raise UsageError(f"{role!r} cannot be the serving role (empty, or one of PostgreSQL's own pg_ roles)")
    if password is not None and (not password or password.lower().startswith(PLACEHOLDER_PREFIX)):
        raise UsageError("the role's password is empty or deploy/env.example's placeholder: set a secret one")
    engine = make_engine(url)
    try:
        if not is_at_head(engine):
            raise UsageError("the database is not at the newest schema: run `vigil db upgrade` first, then grant")
        return _grant(engine, role, password)
    finally:
        engine.dispose()


def _grant(engine: Engine, role: str, password: str | None) -> list[str]:
    try:
        with engine.begin() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            _check_owner(conn, schema)
            _check_role(conn, role, must_exist=password is None)
            done = [] if password is None else [_ensure_login(conn, role, password)]
            statements = grant_statements(conn, role, schema)
            for statement in statements:
                conn.execute(text(statement))
            # PostgreSQL grants nothing, with only a warning, for a user who does not own the tables.
            if missing := missing_privileges(conn, role):
                raise UsageError(f"{role!r} still lacks {', '.join(missing)}: run this as the schema's owner (the URL `vigil db upgrade` used)")
            if excess := excess_privileges(conn, role):
                raise UsageError(f"{role!r} holds {', '.join(excess)} through a role it is a member of, or PUBLIC: revoke that")
            if not conn.execute(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar_one():
                done.append(f"-- warning: {role!r} cannot log in (NOLOGIN): the replicas cannot connect as it until ALTER ROLE ... LOGIN")
        return done + statements
    except DBAPIError as e:  # a role the owner may not create or alter, a name PostgreSQL reserves
        hint = ""
        if password is not None and "permission denied" in driver_reason(e):
            hint = " (creating a role or setting its password needs CREATEROLE: create it as an administrator, then grant without --password-env)"
        raise UsageError(f"the database refused the grant: {driver_reason(e)}{hint}") from e
