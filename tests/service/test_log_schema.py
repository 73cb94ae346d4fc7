"""Migration 0002 goes down and up again; concurrent feedback leaves exactly one current label."""

from __future__ import annotations

import threading

from alembic import command
from sqlalchemy import func, inspect, select

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
    engine.dispose()


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
