"""Fixtures shared by the request-log tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from service.db.engine import make_engine
from service.db.migrate import upgrade


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty, migrated database of each backend."""
    upgrade(db_url)
    e = make_engine(db_url)
    yield e
    e.dispose()
