"""Shared fixtures: a tiny bundle trained in-session, and databases on both backends.

PostgreSQL tests each get a fresh database on the server at VIGIL_TEST_POSTGRES_URL
(default: this machine's 127.0.0.1:5432, trust auth), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from service.cli import main as vigil
from training.settings import TrainingSettings

# Apps in tests compute in-thread: a child inference process (the service's default)
# costs each app start a second torch import. tests/service/test_inference_process.py
# runs the child process on purpose, through the app as well as the runtime.
os.environ.setdefault("VIGIL_INFERENCE_PROCESS", "false")
POSTGRES_ADMIN_URL = os.environ.get("VIGIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = TrainingSettings().data_dir.resolve()
    if not (d / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {d}: set VIGIL_DATA_DIR to the torchvision root")
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A deterministic model trained on 800 MNIST images for 2 epochs through the CLI."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    args = ["train", "--method", "deterministic", "--data-dir", str(data_dir), "--out", str(out)]
    args += ["--train-size", "800", "--val-size", "1000", "--epochs", "2", "--skip-test", "--quiet", "--name", "tiny"]
    assert vigil(args) == 0
    return out


def _pg_database() -> Iterator[str]:
    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend, isolated per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL role name (roles are cluster-wide: unique per test); the role, if the
    test made one, is dropped after, with its grants in `pg_url`'s database."""
    name = f"vigil_app_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(f'DROP OWNED BY "{name}"')
                conn.execute(f'DROP ROLE "{name}"')
