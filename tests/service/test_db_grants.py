"""`vigil db grant ROLE`: a replica connecting as ROLE serves, logs, reads and takes feedback,
and cannot erase or rewrite the request log."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.app import create_app
from service.cli import main as vigil
from service.db.migrate import upgrade
from service.settings import Settings
from tests.images import noise_png

ADMIN = "grant-test-admin-key-0123456789abcdef"
PNG = {"content-type": "image/png"}
#: What the serving role must be refused: the log stays append-only for it.
FORBIDDEN = (
    "DELETE FROM request_log",
    "UPDATE request_log SET decision = 'accept'",
    "TRUNCATE request_log",
    "UPDATE feedback SET true_label = 0",
    "DELETE FROM feedback",
)


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def role(pg_url: str, pg_role: str) -> str:
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{pg_role}" LOGIN')
    return pg_role


@pytest.mark.postgres
def test_a_granted_role_serves_and_cannot_erase_the_log(tiny_bundle: Path, pg_url: str, role: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(pg_url)
    app_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    with psycopg.connect(dsn(app_url)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM request_log")  # before the grant the role reads nothing
    assert vigil(["db", "grant", role, "--url", pg_url]) == 0
    assert f"role '{role}' holds what" in capsys.readouterr().out

    spool = tmp_path / "spool.jsonl"
    settings = Settings(model_dir=tiny_bundle, database_url=app_url, admin_api_keys=[ADMIN], log_spool_path=spool)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings)) as client:
        rid = client.post("/v1/predict", content=noise_png(0), headers=PNG).json()["request_id"]
        batch = client.post("/v1/predict/batch", files=[("images", ("a.png", noise_png(1), "image/png"))])
        assert batch.status_code == 200
        deadline = time.monotonic() + 10
        while (r := client.get(f"/v1/requests/{rid}", headers=admin)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.05)
        # Feedback twice: the second marks the first replaced (the one column it may update).
        for label in (3, 4):
            r = client.post(f"/v1/requests/{rid}/feedback", json={"label": label}, headers=admin)
            assert r.status_code in (200, 201), r.text
        assert client.get(f"/v1/requests/{rid}", headers=admin).json()["feedback"]["label"] == 4
        assert client.get("/v1/requests", headers=admin).status_code == 200
        assert client.get("/v1/reports/summary", headers=admin).status_code == 200
        ready = client.get("/readyz").json()
        assert ready["checks"]["database"] is True and ready["checks"]["request_log"] is True
    # Every row reached the database as the role: none was set aside for want of a privilege.
    assert not spool.exists() or spool.stat().st_size == 0
    with psycopg.connect(dsn(pg_url)) as conn:
        assert conn.execute("SELECT count(*) FROM request_log").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (2,)

    # The operator's commands read the log as the same role.
    assert vigil(["audit", "verify", "--url", app_url]) == 0
    assert vigil(["export", "--url", app_url, "--out", str(tmp_path / "log.csv")]) == 0
    assert (tmp_path / "log.csv").read_text().count("\n") == 3  # the header and both rows
    assert vigil(["report", "--url", app_url, "--out", str(tmp_path / "report.html"), "--bundle", str(tiny_bundle)]) == 0

    for statement in FORBIDDEN:
        with psycopg.connect(dsn(app_url)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_grant_refuses_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["db", "grant", "vigil_app", "--url", f"sqlite:///{tmp_path / 'log.db'}"]) == 2
    assert "SQLite has no roles" in capsys.readouterr().err


@pytest.mark.postgres
def test_grant_refuses_a_missing_role_and_an_old_schema(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["db", "grant", "vigil_app_missing", "--url", pg_url]) == 2
    assert "vigil db upgrade" in capsys.readouterr().err  # not at head yet: upgrade first
    upgrade(pg_url)
    assert vigil(["db", "grant", "no_such_role_here", "--url", pg_url]) == 2
    assert "no role 'no_such_role_here'" in capsys.readouterr().err


@pytest.mark.postgres
def test_grant_creates_the_role_with_the_deployments_password_and_resets_it(
    pg_url: str, pg_role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compose's migration job makes the role itself, on a fresh volume or an old one."""
    upgrade(pg_url)

    def stored() -> str | None:
        with psycopg.connect(dsn(pg_url)) as conn:
            row = conn.execute("SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = %s", (pg_role,)).fetchone()
        assert row is not None and row[1] is True
        return row[0]

    assert vigil(["db", "grant", pg_role, "--url", pg_url, "--password-env", "APP_PW"]) == 2  # unset: refused
    assert "APP_PW is not set" in capsys.readouterr().err
    monkeypatch.setenv("APP_PW", "it's a secret; DROP TABLE request_log")  # quoting, not SQL
    assert vigil(["db", "grant", pg_role, "--url", pg_url, "--password-env", "APP_PW"]) == 0
    out = capsys.readouterr().out
    assert "CREATE ROLE" in out and "secret" not in out  # the password is never printed
    first = stored()
    assert first and first.startswith("SCRAM-SHA-256$")
    monkeypatch.setenv("APP_PW", "another")
    assert vigil(["db", "grant", pg_role, "--url", pg_url, "--password-env", "APP_PW"]) == 0
    assert "ALTER ROLE" in capsys.readouterr().out and stored() != first
    with psycopg.connect(dsn(pg_url)) as conn:  # the grants came with it
        assert conn.execute("SELECT has_table_privilege(%s, 'request_log', 'INSERT')", (pg_role,)).fetchone() == (True,)
        assert conn.execute("SELECT has_table_privilege(%s, 'request_log', 'DELETE')", (pg_role,)).fetchone() == (False,)


@pytest.mark.postgres
def test_a_role_short_of_a_grant_is_refused_at_start_and_its_rows_wait_in_the_spool(
    tiny_bundle: Path, pg_url: str, role: str, tmp_path: Path
) -> None:
    """A missing grant is the deployment's fault, not the rows': `vigil serve` refuses to start,
    and a service already running keeps the rows in its spool (they were set aside for good)."""
    from service.preflight import StartupProblem, preflight

    upgrade(pg_url)
    assert vigil(["db", "grant", role, "--url", pg_url]) == 0
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute(f'REVOKE INSERT ON request_log FROM "{role}"')
    app_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    spool = tmp_path / "spool.jsonl"
    settings = Settings(model_dir=tiny_bundle, database_url=app_url, log_spool_path=spool, log_replay_interval_s=0.2)
    with pytest.raises(StartupProblem, match=f"lacks INSERT on request_log: run `vigil db grant {role}`"):
        preflight(settings)

    with TestClient(create_app(settings)) as client:
        rid = client.post("/v1/predict", content=noise_png(0), headers=PNG).json()["request_id"]
        deadline = time.monotonic() + 10
        while not (spool.exists() and rid in spool.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # a few replays, all refused
        assert rid in spool.read_text() and not list(tmp_path.glob("*.rejected"))  # kept, not set aside
        assert 'vigil_log_database_up 0.0' in client.get("/metrics").text
        ready = client.get("/readyz")  # the database answers, only the inserts are refused: still ready, not stored
        assert ready.status_code == 200 and ready.json()["checks"]["database"] is True and ready.json()["checks"]["request_log_stored"] is False
        with psycopg.connect(dsn(pg_url), autocommit=True) as conn:  # the operator mends the grant
            conn.execute(f'GRANT INSERT ON request_log TO "{role}"')
        deadline = time.monotonic() + 10
        while rid in spool.read_text():
            assert time.monotonic() < deadline, "the spool was not replayed after the grant"
            time.sleep(0.05)
        assert client.get("/readyz").json()["checks"]["request_log_stored"] is True
    with psycopg.connect(dsn(pg_url)) as conn:
        assert conn.execute("SELECT count(*) FROM request_log WHERE request_id = %s", (rid,)).fetchone() == (1,)


@pytest.mark.postgres
def test_grant_refuses_what_it_cannot_hold_to_the_list(pg_url: str, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(pg_url)
    owner = dsn(pg_url)

    def refused(args: list[str], why: str, url: str = pg_url) -> None:
        assert vigil(["db", "grant", *args, "--url", url]) == 2
        assert why in capsys.readouterr().err

    def as_owner(*statements: str) -> None:
        with psycopg.connect(owner, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    refused(["postgres"], "is the user this command connects as")
    refused(["pg_read_all_data"], "PostgreSQL's own pg_ roles")
    wide, member = f'"{role}_wide"', f'"{role}"'
    as_owner(f'CREATE ROLE "{role}_su" SUPERUSER', f"CREATE ROLE {wide}")  # wide: a role given what the list forbids
    try:
        refused([f"{role}_su"], "is a superuser")
        # Each privilege the list forbids, held through a membership (or PUBLIC), is refused: a
        # column's UPDATE rewrites the log as well as the table's (the hash chain's column here),
        # a trigger could rewrite the rows the role inserts, the version table is the owner's.
        for grant, held in (
            (f"GRANT DELETE ON request_log TO {wide}", "DELETE on request_log"),
            (f"GRANT UPDATE (row_hash) ON request_log TO {wide}", "UPDATE on request_log (row_hash)"),
            (f"GRANT TRIGGER ON request_log TO {wide}", "TRIGGER on request_log"),
            (f"GRANT CREATE ON SCHEMA public TO {wide}", "CREATE on schema public"),
            ("GRANT TRUNCATE ON alembic_version TO PUBLIC", "TRUNCATE on alembic_version"),
        ):
            as_owner(grant, f"GRANT {wide} TO {member}")
            try:
                refused([role], f"holds {held} through a role it is a member of, or PUBLIC")
            finally:
                as_owner(grant.replace("GRANT", "REVOKE", 1).replace(" TO ", " FROM "), f"REVOKE {wide} FROM {member}")
        as_owner(f"GRANT ALL ON request_log TO {member}", f"GRANT CREATE ON SCHEMA public TO {member}")  # its own, earlier, wider grants
        assert vigil(["db", "grant", role, "--url", pg_url]) == 0  # revoked, then the list granted
        with psycopg.connect(owner) as conn:
            held = conn.execute("SELECT has_table_privilege(%s, 'request_log', 'DELETE'), has_table_privilege(%s, 'request_log', 'INSERT'), "
                                "has_schema_privilege(%s, 'public', 'CREATE')", (role, role, role)).fetchone()  # fmt: skip
        assert held == (False, True, False)
        # Run as a user that owns nothing: PostgreSQL would grant nothing, with a mere warning.
        refused([f"{role}_wide"], "does not own", url=make_url(pg_url).set(username=role).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(owner, autocommit=True) as conn:
            for extra in ("su", "wide"):
                conn.execute(f'DROP OWNED BY "{role}_{extra}"')
                conn.execute(f'DROP ROLE "{role}_{extra}"')


@pytest.mark.postgres
def test_grant_refuses_the_placeholder_password_and_finds_a_schema_with_capitals(
    pg_url: str, pg_role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    upgrade(pg_url)
    monkeypatch.setenv("APP_PW", "change-me-too")  # deploy/env.example's, copied as it is
    assert vigil(["db", "grant", pg_role, "--url", pg_url, "--password-env", "APP_PW"]) == 2
    assert "placeholder" in capsys.readouterr().err
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Vigil_S"')
        conn.execute("CREATE SCHEMA vigil_s")  # its lower-case namesake, which must not be granted instead
    in_schema = pg_url + "?options=-csearch_path%3D%22Vigil_S%22"
    upgrade(in_schema)
    monkeypatch.setenv("APP_PW", "s3cret-enough")
    assert vigil(["db", "grant", pg_role, "--url", in_schema, "--password-env", "APP_PW"]) == 0
    with psycopg.connect(dsn(pg_url)) as conn:
        held = conn.execute("SELECT has_sequence_privilege(%s, '\"Vigil_S\".request_log_id_seq', 'USAGE')", (pg_role,)).fetchone()
    assert held == (True,)


@pytest.mark.postgres
def test_the_privilege_check_lets_a_migration_start_on_an_empty_or_older_database(tiny_bundle: Path, pg_url: str, tmp_path: Path) -> None:
    """`vigil serve --migrate` on an empty database, or one a migration behind, as its owner:
    the tables still to come are the migration's to make, not privileges to miss."""
    from service.db.migrate import downgrade
    from service.preflight import preflight

    settings = Settings(model_dir=tiny_bundle, database_url=pg_url, migrate_on_start=True, log_spool_path=tmp_path / "spool.jsonl")
    assert preflight(settings).manifest.name == "tiny"  # empty: no table, no sequence yet
    upgrade(pg_url)
    downgrade(pg_url, "-1")  # request_log without feedback
    assert preflight(settings).manifest.name == "tiny"


@pytest.mark.postgres
def test_a_serving_role_is_told_who_migrates(tiny_bundle: Path, pg_url: str, role: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The serving role can neither run --migrate nor `vigil db upgrade`: the owner must."""
    from service.db.migrate import downgrade
    from service.preflight import StartupProblem, preflight

    upgrade(pg_url)
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{role}" NOLOGIN')
    assert vigil(["db", "grant", role, "--url", pg_url]) == 0
    assert "cannot log in (NOLOGIN)" in capsys.readouterr().out
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{role}" LOGIN')
    app_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    spool = tmp_path / "spool.jsonl"
    with pytest.raises(StartupProblem, match=f"--migrate needs the schema's owner; '{role}' only serves"):
        preflight(Settings(model_dir=tiny_bundle, database_url=app_url, migrate_on_start=True, log_spool_path=spool))
    downgrade(pg_url, "-1")
    with pytest.raises(StartupProblem, match=f"not at the newest schema: run `vigil db upgrade` as the schema's owner, then `vigil db grant {role}`"):
        preflight(Settings(model_dir=tiny_bundle, database_url=app_url, log_spool_path=spool))


@pytest.mark.postgres
def test_the_preflight_names_a_role_as_a_shell_takes_it(tiny_bundle: Path, pg_url: str, pg_role: str, tmp_path: Path) -> None:
    from service.preflight import StartupProblem, preflight

    spaced = f"{pg_role} app"  # a name the suggested command must quote
    upgrade(pg_url)
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{spaced}" LOGIN')
    try:
        app_url = make_url(pg_url).set(username=spaced).render_as_string(hide_password=False)
        with pytest.raises(StartupProblem, match=f"lacks .*: run `vigil db grant '{spaced}'` as the schema's owner"):
            preflight(Settings(model_dir=tiny_bundle, database_url=app_url, log_spool_path=tmp_path / "spool.jsonl"))
    finally:
        with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{spaced}"')
            conn.execute(f'DROP ROLE "{spaced}"')
