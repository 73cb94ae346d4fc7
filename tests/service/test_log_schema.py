"""Migrations go down and up again; concurrent feedback leaves exactly one current label; the
database itself keeps feedback append-only (migrations 0003 and 0004)."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from service.db.engine import make_engine
from service.db.feedback import add_feedback
from service.db.migrate import alembic_config, upgrade
from service.db.tables import Feedback


def test_downgrade_and_upgrade_again(db_url: str) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "0001")
    engine = make_engine(db_url)
    assert "feedback" not in inspect(engine).get_table_names()
    upgrade(db_url)
    assert "feedback" in inspect(engine).get_table_names()
    command.downgrade(alembic_config(db_url), "0002")  # the triggers go, the rows stay editable
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO feedback (request_id, true_label, created_at) VALUES ('r', 1, '2026-12-01 00:00:00+00')"))
        conn.execute(text("UPDATE feedback SET true_label = 2"))
        conn.execute(text("DELETE FROM feedback"))
    upgrade(db_url)
    engine.dispose()


def test_the_database_keeps_feedback_append_only(db_url: str) -> None:
    """Whoever connects, the owner included: a label is never edited or removed, and the mark
    of a replaced one is set once, only when a newer label exists, and never cleared (which
    would bring the old label back)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    first, _ = add_feedback(engine, "req-1", 3, "first", None, lambda _: 200)
    second, replaced = add_feedback(engine, "req-1", 4, None, None, lambda _: 200)  # setting replaced_at from null: allowed
    assert replaced
    for statement in (
        f"UPDATE feedback SET replaced_at = NULL WHERE id = {first.id}",  # the old label current again
        f"UPDATE feedback SET replaced_at = created_at WHERE id = {first.id}",  # the mark moved
        f"UPDATE feedback SET true_label = 5 WHERE id = {second.id}",
        f"UPDATE feedback SET note = 'edited' WHERE id = {first.id}",
        f"UPDATE feedback SET note = 'added' WHERE id = {second.id}",  # null to a value is a change too
        f"UPDATE feedback SET request_id = 'req-2' WHERE id = {second.id}",
        f"UPDATE feedback SET client_id = 'someone' WHERE id = {second.id}",
        f"UPDATE feedback SET created_at = replaced_at WHERE id = {second.id}",
        f"UPDATE feedback SET id = id + 100 WHERE id = {second.id}",
        f"UPDATE feedback SET replaced_at = created_at, true_label = 9 WHERE id = {second.id}",  # a label smuggled in with the mark
        f"UPDATE feedback SET replaced_at = created_at WHERE id = {second.id}",  # the current label hidden, no newer one
        f"DELETE FROM feedback WHERE id = {first.id}",
        *(["TRUNCATE feedback"] if db_url.startswith("postgresql") else []),
    ):
        with pytest.raises(DBAPIError, match="feedback is append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        rows = conn.execute(select(Feedback.id, Feedback.true_label, Feedback.note, Feedback.replaced_at.is_(None)).order_by(Feedback.id)).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(first.id, 3, "first", False), (second.id, 4, None, True)]


def test_concurrent_feedback_keeps_one_current_label(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    errors: list[BaseException] = []

    def post(label: int) -> None:
        try:
            add_feedback(engine, "req-1", label, None, None, lambda _: 200)
        except Exception as e:  # noqa: BLE001 - collected: an error in a thread would vanish
            errors.append(e)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(Feedback)).scalar_one()
        current = conn.execute(select(func.count()).where(Feedback.replaced_at.is_(None))).scalar_one()
    engine.dispose()
    assert not errors and (total, current) == (8, 1)


def test_the_append_only_trigger_names_every_column_but_replaced_at() -> None:
    """The trigger lists the columns it freezes: a column added to `feedback` later must be
    added there too, or it would be editable."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "migrations" / "versions" / "0003_feedback_append_only.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    frozen = {c.name for c in Feedback.__table__.columns} - {"replaced_at"}
    assert frozen and all(f"NEW.{c} IS DISTINCT FROM OLD.{c}" in migration.FORBIDDEN for c in frozen), frozen



@pytest.mark.postgres
def test_the_previous_versions_order_still_relabels_on_postgresql(pg_url: str) -> None:
    """Replicas of the previous version mark the old label, then insert the new one: checked at
    commit (a deferred constraint trigger), that order keeps working during a rolling deploy."""
    upgrade(pg_url)
    engine = make_engine(pg_url)
    add_feedback(engine, "req-1", 3, None, None, lambda _: 200)
    with engine.begin() as conn:  # the order of service/db/feedback.py before migration 0004
        conn.execute(text("UPDATE feedback SET replaced_at = now() WHERE request_id = 'req-1' AND replaced_at IS NULL"))
        conn.execute(text("INSERT INTO feedback (request_id, true_label, created_at) VALUES ('req-1', 4, now())"))
    with engine.connect() as conn:
        current = conn.execute(text("SELECT true_label FROM feedback WHERE request_id = 'req-1' AND replaced_at IS NULL")).scalars().all()
    engine.dispose()
    assert current == [4]


@pytest.mark.postgres
def test_the_newer_label_check_ignores_the_callers_search_path(pg_url: str) -> None:
    """Run with the caller's search_path, the check's `=` resolved to an operator the caller
    defined (one that is always true), and a bare mark passed: a review did it as a role that
    owns a schema of its own."""
    upgrade(pg_url)
    engine = make_engine(pg_url)
    add_feedback(engine, "req-1", 3, None, None, lambda _: 200)
    add_feedback(engine, "req-2", 5, None, None, lambda _: 200)  # a newer row, of another request
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA own"))
        conn.execute(text("CREATE FUNCTION own.yes(varchar, varchar) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'"))
        conn.execute(text("CREATE OPERATOR own.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = own.yes)"))
    with pytest.raises(DBAPIError, match="marked replaced only by a newer label"), engine.begin() as conn:
        conn.execute(text("SET LOCAL search_path = own, public"))
        conn.execute(text("UPDATE feedback SET replaced_at = now() WHERE request_id::text = 'req-1' AND replaced_at IS NULL"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM feedback WHERE replaced_at IS NULL")).scalar_one() == 2
    engine.dispose()
