"""Apply Alembic migrations programmatically (`vigil db upgrade`, or at service start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Engine

from service.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a URL (encoded password) must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def revisions(url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the newest one in `migrations/`)."""
    engine = make_engine(url)  # bounded connection attempts
    try:
        return engine_revisions(engine)
    finally:
        engine.dispose()


def engine_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """`revisions` through an engine the caller holds."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), head


def history(url: str) -> list[str]:
    """Every revision, newest first: `<rev> <- <down rev>: <message>`."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [f"{r.revision} <- {r.down_revision or 'base'}: {r.doc}" for r in script.walk_revisions()]


def newer_than_code(url: str, current: str | None) -> str | None:
    """A note for a database at a revision `migrations/` does not have (a newer Vigil migrated
    it, then was rolled back): `vigil db upgrade` cannot help there. None for a known one."""
    if current is None:
        return None
    try:
        ScriptDirectory.from_config(alembic_config(url)).get_revision(current)
    except (CommandError, RevisionError):
        return (
            f"revision {current} is not one this version of Vigil knows (a newer version migrated it): "
            "serve it with that version, or downgrade it with that version first"
        )
    return None


def is_at_head(engine: Engine) -> bool:
    """True when the database's Alembic revision is the newest one in `migrations/`."""
    current, head = engine_revisions(engine)
    return current == head
