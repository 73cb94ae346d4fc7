"""The schema comes only from Alembic: upgrading an empty database leaves no model drift."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service.cli import main as vigil
from service.db.engine import make_engine
from service.db.migrate import is_at_head
from service.db.tables import Base


def test_upgrade_to_head_matches_models(db_url: str) -> None:
    assert vigil(["db", "upgrade", "--url", db_url]) == 0
    engine = make_engine(db_url)
    try:
        assert is_at_head(engine)
        assert "request_log" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
