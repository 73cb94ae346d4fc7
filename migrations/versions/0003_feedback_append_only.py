"""feedback: append-only in the database itself

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:00:00

A newer label marks the one it replaces by setting `replaced_at`; nothing else about a feedback
row may ever change. The serving role's grant (`vigil db grant`) already limits it to that one
column, but a column grant cannot say "once": the role could clear `replaced_at` to bring an
old label back, or move it. These triggers refuse, for every role the owner included, any
UPDATE but setting `replaced_at` from null to a time, and any DELETE. A non-owner cannot drop
or disable them.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MESSAGE = "feedback is append-only: only replaced_at may be set, once, from null"

#: An UPDATE of a replaced row (its mark set, it is frozen), or of any column but `replaced_at`.
FORBIDDEN = (
    "OLD.replaced_at IS NOT NULL"
    " OR NEW.id IS DISTINCT FROM OLD.id OR NEW.request_id IS DISTINCT FROM OLD.request_id"
    " OR NEW.true_label IS DISTINCT FROM OLD.true_label OR NEW.note IS DISTINCT FROM OLD.note"
    " OR NEW.client_id IS DISTINCT FROM OLD.client_id OR NEW.created_at IS DISTINCT FROM OLD.created_at"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION feedback_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation'; END $$"
        )
        op.execute(f"CREATE TRIGGER feedback_update_once BEFORE UPDATE ON feedback FOR EACH ROW WHEN ({FORBIDDEN}) EXECUTE FUNCTION feedback_append_only()")
        op.execute("CREATE TRIGGER feedback_no_delete BEFORE DELETE ON feedback FOR EACH ROW EXECUTE FUNCTION feedback_append_only()")
        # TRUNCATE fires no row trigger: a statement one refuses it too.
        op.execute("CREATE TRIGGER feedback_no_truncate BEFORE TRUNCATE ON feedback FOR EACH STATEMENT EXECUTE FUNCTION feedback_append_only()")
    else:  # SQLite (IS NOT is its null-safe inequality; it has no TRUNCATE)
        sqlite_forbidden = FORBIDDEN.replace("IS DISTINCT FROM", "IS NOT")
        op.execute(f"CREATE TRIGGER feedback_update_once BEFORE UPDATE ON feedback WHEN {sqlite_forbidden} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")
        op.execute(f"CREATE TRIGGER feedback_no_delete BEFORE DELETE ON feedback BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    for trigger in ("feedback_update_once", "feedback_no_delete", "feedback_no_truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON feedback" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS feedback_append_only()")
