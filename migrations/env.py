"""Alembic environment: the URL comes from the caller's Config, the metadata from the ORM."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from service.db.engine import make_engine
from service.db.tables import Base

config = context.config
#: PostgreSQL advisory lock key held while migrating (any fixed number; "vigil" in ASCII).
MIGRATION_LOCK = 0x766967696C
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # The service's engine: PostgreSQL connects within bounds (a host that never answers fails
    # `vigil db upgrade` in seconds, not after the kernel's TCP retries), SQLite runs in WAL.
    engine = make_engine(str(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                if conn.dialect.name == "postgresql":
                    # Replicas started together with --migrate (or a job beside them) take turns:
                    # the second reads the version table after the first commits, and has nothing
                    # to do, instead of failing on a type the first is creating.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                context.run_migrations()
    finally:
        engine.dispose()  # a failed migration too: no pooled connection left behind


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
