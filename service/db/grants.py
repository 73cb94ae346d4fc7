"""Least privilege on PostgreSQL: what a serving role needs, granted by the schema's owner.

The service only appends request-log rows, reads them back, and records feedback (an insert,
and an update that marks the label it replaces). A replica connecting as the owner could also
delete or rewrite the log, drop its tables, or create new ones: whoever takes over a replica
(or a bug in it) could then erase exactly the record the log exists to keep. `vigil db grant
ROLE`, run with the owner's URL after `vigil db upgrade`, gives ROLE these privileges and no
others; the replicas connect as ROLE.

The list is the service's own statements, checked by a test that serves, logs, reads, exports
and records feedback as such a role, and is refused a delete, an update of the log and a drop.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from models.usage import UsageError
from service.db.engine import make_engine

#: (privileges, table): the log is append-only for the service; feedback's only update is
#: `replaced_at` (service.db.feedback), and Alembic's version table is read at start.
TABLE_GRANTS: tuple[tuple[str, str], ...] = (
    ("SELECT", "alembic_version"),
    ("SELECT, INSERT", "request_log"),
    ("SELECT, INSERT, UPDATE (replaced_at)", "feedback"),
)
#: The tables whose ids come from a sequence the inserts must draw from.
SERIAL_IDS: tuple[str, ...] = ("request_log", "feedback")


def _role_exists(conn: Connection, role: str) -> bool:
    return conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is not None


def grant_statements(conn: Connection, role: str) -> list[str]:
    """The GRANTs for `role` on this database's schema (its sequences looked up by name)."""
    quote = conn.dialect.identifier_preparer.quote
    who = quote(role)
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    out = [f"GRANT USAGE ON SCHEMA {quote(schema)} TO {who}"]
    out += [f"GRANT {privileges} ON {quote(schema)}.{quote(table)} TO {who}" for privileges, table in TABLE_GRANTS]
    for table in SERIAL_IDS:
        sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": f"{schema}.{table}"}).scalar_one()
        out.append(f"GRANT USAGE ON SEQUENCE {sequence} TO {who}")  # already quoted by PostgreSQL
    return out


def _ensure_login(conn: Connection, role: str, password: str) -> str:
    """Create `role` with LOGIN and `password`, or set an existing one's password: the
    deployment's secret stays the one truth, on a fresh database volume or an old one."""
    from psycopg import sql

    verb = "ALTER" if _role_exists(conn, role) else "CREATE"
    statement = sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cur:  # psycopg's own quoting: a password is no bind parameter in DDL
        cur.execute(statement)
    return f"{verb} ROLE {conn.dialect.identifier_preparer.quote(role)} LOGIN PASSWORD '...'"


def grant_service_role(url: str, role: str, password: str | None = None) -> list[str]:
    """Grant `role` what the service needs on the database at `url` (the owner's); with
    `password`, create the role (or set its password) first. Returns the statements run
    (passwords elided). Refuses SQLite, a missing role, and a schema that is not at head."""
    from service.db.migrate import is_at_head

    if not url.startswith("postgresql"):
        raise UsageError("vigil db grant is for PostgreSQL: SQLite has no roles (protect its file instead)")
    if password == "":
        raise UsageError("the role's password is empty")
    engine = make_engine(url)
    try:
        if not is_at_head(engine):
            raise UsageError("the database is not at the newest schema: run `vigil db upgrade` first, then grant")
        with engine.begin() as conn:
            done = [] if password is None else [_ensure_login(conn, role, password)]
            if not _role_exists(conn, role):
                raise UsageError(f"no role {role!r} in this PostgreSQL: create it first, or pass --password-env VARIABLE")
            statements = done + grant_statements(conn, role)
            for statement in statements[len(done) :]:
                conn.execute(text(statement))
        return statements
    finally:
        engine.dispose()
