"""The schema comes only from Alembic: upgrading an empty database leaves no model drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url

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


def test_an_operator_can_see_and_undo_the_schema_version(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["db", "history", "--url", db_url]) == 0
    history = capsys.readouterr().out.splitlines()
    assert history[0].startswith("0004 <- 0003") and history[-1].startswith("0001 <- base")
    if db_url.startswith("sqlite"):  # asking must not create the file (the server's preflight says it is missing)
        assert vigil(["db", "current", "--url", db_url]) == 0
        assert "does not exist (no schema)" in capsys.readouterr().out
        assert vigil(["db", "current", "--check", "--url", db_url]) == 1
        assert not Path(make_url(db_url).database or "").exists()
    else:  # an empty PostgreSQL database
        assert vigil(["db", "current", "--url", db_url]) == 0
        assert "revision none (empty), behind head 0004" in capsys.readouterr().out
        assert vigil(["db", "current", "--check", "--url", db_url]) == 1
    assert vigil(["db", "upgrade", "--url", db_url]) == 0
    assert vigil(["db", "current", "--check", "--url", db_url]) == 0
    assert capsys.readouterr().out.strip().endswith("revision 0004, at head")
    assert vigil(["db", "downgrade", "-1", "--url", db_url]) == 2  # drops data: asks for --yes first
    assert "--yes" in capsys.readouterr().err and is_at_head(make_engine(db_url))
    assert vigil(["db", "downgrade", "-1", "--url", db_url, "--yes"]) == 0
    assert capsys.readouterr().out.strip().endswith("downgraded to revision 0003")
    assert not is_at_head(make_engine(db_url))
    assert vigil(["db", "current", "--check", "--url", db_url]) == 1
    assert "revision 0003, behind head 0004" in capsys.readouterr().out
    for revision, says in (("nosuchrev", "Can't locate revision identified by 'nosuchrev'"), ("+1", "Relative revision +1")):
        assert vigil(["db", "downgrade", revision, "--url", db_url, "--yes"]) == 2  # a mistake, not a bug (70)
        err = capsys.readouterr().err
        assert err.startswith(f"vigil db: error: migration: {says}") and "Traceback" not in err, err
    assert vigil(["db", "upgrade", "--url", db_url]) == 0 and is_at_head(make_engine(db_url))


@pytest.mark.postgres
def test_built_in_commands_do_not_wait_for_the_training_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vigil db upgrade` runs in migration jobs and init containers: it imports neither torch
    nor the training code (11 s before, on this 2-core machine, now under 2). The entry points'
    commands still load for any other command, and for --help."""
    probe = "import sys; from service.cli import main; rc = main(sys.argv[1:]); print(rc, sorted(m for m in ('torch', 'training') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe, "db", "upgrade", "--url", f"sqlite:///{tmp_path / 'log.db'}"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr
    for argv in (["no-such-command"], ["--help"]):
        with pytest.raises(SystemExit):
            vigil(argv)
        out = capsys.readouterr()
        assert "evaluate-ood" in out.out + out.err and "replay" in out.out + out.err, argv  # every command offered


@pytest.mark.parametrize(
    ("argv", "usage"),
    [(["db", "current", "--bogus"], "usage: vigil db current "), (["refit", "b", "--out", "o", "--members", "3"], "usage: vigil refit ")],
)
def test_an_unknown_option_is_refused_with_its_commands_usage(argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Not the top level's list of commands, which said nothing of what the command takes."""
    with pytest.raises(SystemExit) as e:
        vigil(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(usage), err
    unknown = "--members 3" if argv[0] == "refit" else "--bogus"
    assert err.strip().splitlines()[-1] == f"{usage.removeprefix('usage: ').strip()}: error: unrecognized arguments: {unknown}"


def test_replicas_migrating_at_once_take_turns(pg_url: str) -> None:
    # Four `vigil db upgrade` at once on an empty database (replicas started with --migrate).
    # Without the lock, one of three failed on a type another was creating, with a traceback,
    # in most runs (a race: this test catches it often, not always).
    procs = [
        subprocess.Popen([sys.executable, "-m", "service.cli", "db", "upgrade", "--url", pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0] * 4, [err[-500:] for _, err in results]
    assert is_at_head(make_engine(pg_url))



def test_upgrade_against_a_server_that_never_answers_fails_within_seconds() -> None:
    """A host that takes the connection and says nothing (a firewall, a hung server): the
    migration job must fail in seconds with one line, as `vigil serve` does, not wait on the
    kernel's TCP retries (it waited for ever: libpq has no default connect timeout)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        url = f"postgresql+psycopg://vigil@127.0.0.1:{silent.getsockname()[1]}/vigil"
        # In a process of its own, so that a regression fails here (TimeoutExpired), not hangs.
        done = subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade", "--url", url],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "timeout" in done.stderr.lower(), done.stderr[-800:]
    assert "Traceback" not in done.stderr
