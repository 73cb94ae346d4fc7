"""What `vigil serve` checks before it starts uvicorn, so an operator reads one sentence.

The app's lifespan refuses the same conditions, but uvicorn reports a failed lifespan as
a long traceback and exit status 3. Checked here first, the command prints the reason
(bundle unreadable, database unreachable, schema not migrated) and exits with status 2.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from models.bundle import BundleError, load_bundle
from service.db.engine import make_engine
from service.db.migrate import is_at_head
from service.settings import Settings


def startup_problem(settings: Settings) -> str | None:
    """Why the service cannot start with `settings`, in one line, or None when it can."""
    try:
        load_bundle(settings.model_dir)
    except (BundleError, OSError) as e:
        return f"cannot load the model bundle: {e}"  # the error names the path
    engine = make_engine(settings.database_url)
    try:
        with engine.connect():
            pass
        if not settings.migrate_on_start and not is_at_head(engine):
            return f"database {engine.url!r} is not at the newest schema: run `vigil db upgrade` or start with --migrate"
    except SQLAlchemyError as e:
        # repr(engine.url) masks the password; the driver's first line says what failed.
        reason = str(e.orig if getattr(e, "orig", None) else e).strip().splitlines()[0]
        return f"cannot reach the database {engine.url!r}: {reason}"
    finally:
        engine.dispose()
    return None
