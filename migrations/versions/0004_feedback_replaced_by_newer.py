"""feedback: a label is marked replaced only once a newer one for its request exists

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 07:00:00

Migration 0003 lets `replaced_at` be set once, from null, and nothing else. That still let a
role mark a request's current label replaced without adding a newer one, hiding the label
(the request then has no current label) while the history showed no reason for it. Now the
mark is refused unless a newer feedback row for the same request exists by the end of the
transaction: the service inserts the new label first, then marks the ones before it.

On PostgreSQL the check is a deferred constraint trigger, run at commit, so the order within
the transaction does not matter: replicas of the previous version (which mark first, then
insert) keep working while a rolling deploy replaces them. SQLite has no deferred triggers:
its check runs at the mark, so processes of the previous version sharing a SQLite file must
be stopped before the upgrade. The PostgreSQL function fixes its own search_path: run with
the caller's, its `=` could resolve to an operator the caller defined.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MESSAGE = "feedback is append-only: a label is marked replaced only by a newer label for its request"
#: The mark being set: the only UPDATE migration 0003 lets through.
MARKING = "OLD.replaced_at IS NULL AND NEW.replaced_at IS NOT NULL"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL's trigger WHEN takes no subquery: the function looks, naming the table by
        # the trigger's own schema, with its operators resolved in pg_catalog whatever the
        # caller's search_path.
        op.execute(
            "CREATE FUNCTION feedback_replaced_by_newer() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog, pg_temp AS $$ "
            "DECLARE newer boolean; BEGIN "
            "EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE request_id = $1 AND id > $2)', TG_TABLE_SCHEMA, TG_TABLE_NAME) "
            "INTO newer USING OLD.request_id, OLD.id; "
            f"IF NOT newer THEN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation'; END IF; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER feedback_replaced_by_newer AFTER UPDATE ON feedback DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW WHEN ({MARKING}) EXECUTE FUNCTION feedback_replaced_by_newer()"
        )
    else:
        newer = "EXISTS (SELECT 1 FROM feedback AS f WHERE f.request_id = OLD.request_id AND f.id > OLD.id)"
        op.execute(f"CREATE TRIGGER feedback_replaced_by_newer BEFORE UPDATE ON feedback WHEN {MARKING} AND NOT {newer} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER IF EXISTS feedback_replaced_by_newer" + (" ON feedback" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS feedback_replaced_by_newer()")
