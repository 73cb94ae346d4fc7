"""Requests that wait on the database (log reads, feedback) when it is slow or hung: a 503 that
says when to retry, on threads that cannot take the predictions' with them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.images import noise_png
from tests.service.logrows import table_locked
from tests.service.own_postgres import own_postgres

ADMIN = {"Authorization": "Bearer test-admin-key-0123456789abcdef"}
PNG = {"content-type": "image/png"}


def settings_for(url: str, bundle: Path, tmp_path: Path, **extra: object) -> Settings:
    return Settings(model_dir=bundle, database_url=url, migrate_on_start=True, admin_api_keys=[ADMIN["Authorization"][7:]],
                    log_spool_path=tmp_path / "spool.jsonl", log_write_timeout_s=0.3, **extra)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.postgres
def test_a_locked_request_log_answers_503_with_retry_after_not_a_wait(tiny_bundle: Path, pg_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(pg_url, tiny_bundle, tmp_path, db_timeout_s=0.5))) as client:
        rid = client.post("/v1/predict", content=noise_png(0), headers=PNG).json()["request_id"]
        with table_locked(pg_url):  # a migration, or a stuck transaction, holds the table
            spec = client.get("/openapi.json").json()["paths"]
            for method, path, body in (("GET", "/v1/requests", None), ("GET", f"/v1/requests/{rid}", None),
                                       ("POST", f"/v1/requests/{rid}/feedback", {"label": 1}), ("GET", "/v1/reports/summary", None)):  # fmt: skip
                t0 = time.monotonic()
                r = client.request(method, path, json=body, headers=ADMIN)
                # The lock timeout ends the wait; before, the request waited as long as the lock.
                assert (r.status_code, r.json()["error"]["code"]) == (503, "database_unavailable"), (path, r.text)
                documented = spec[path.replace(rid, "{request_id}")][method.lower()]["responses"]["503"]
                assert documented["content"]["application/json"]["example"]["error"]["code"] == "database_unavailable"
                assert r.headers["retry-after"] == "5" and time.monotonic() - t0 < 5
                assert "lock" not in r.json()["error"]["message"]  # the database's own words stay in the service log
            assert client.post("/v1/predict", content=noise_png(1), headers=PNG).status_code == 200  # predictions go on
        deadline = time.monotonic() + 10
        while (r := client.get(f"/v1/requests/{rid}", headers=ADMIN)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_hung_database_holds_only_its_own_threads(tiny_bundle: Path, tmp_path: Path) -> None:
    with own_postgres() as pg:
        # One database thread, so one hung request fills it.
        settings = settings_for(pg.url, tiny_bundle, tmp_path, db_concurrency=1, db_timeout_s=0.5)
        app = create_app(settings)
        with TestClient(app) as client:
            assert client.get("/v1/requests", headers=ADMIN).status_code == 200
            engine = app.state.ctx.engine
            with engine.connect(), engine.connect():  # two pooled connections: every hung call below is a
                pass  # ping that no timeout ends (a new connection's would, after libpq's 5 s)
            answers: list[httpx.Response] = []
            with pg.frozen():
                hung = threading.Thread(target=lambda: answers.append(client.post("/v1/requests/x/feedback", json={"label": 1})))
                hung.start()
                deadline = time.monotonic() + 5
                while app.state.ctx.db._admit.value > 0:  # admitted, waiting on the database
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                t0 = time.monotonic()
                r = client.post("/v1/requests/x/feedback", json={"label": 1})
                assert (r.status_code, r.json()["error"]["code"]) == (503, "database_busy"), r.text
                assert r.headers["retry-after"] == "5" and time.monotonic() - t0 < 3
                # The images are decoded on the shared threads, which the hung database does not hold.
                assert client.post("/v1/predict", content=noise_png(2), headers=PNG).status_code == 200
                # Readiness says so within its second, and its probes share one check in flight
                # (one thread and connection held, not one per probe).
                probes = [client.get("/readyz") for _ in range(3)]
                # (ready all the same: the spool takes the rows)
                assert [(p.status_code, p.json()["checks"]["database"]) for p in probes] == [(200, False)] * 3
                first = app.state.ctx.db_probe
                assert first is not None and not first.done()
                assert client.get("/readyz").json()["checks"]["database"] is False and app.state.ctx.db_probe is first
            hung.join(30)
            # The server answered again: the request that waited got its own answer (an unknown id).
            assert [a.status_code for a in answers] == [404]
            assert client.post("/v1/requests/x/feedback", json={"label": 1}).status_code == 404


def test_only_the_databases_own_state_is_a_503(tmp_path: Path) -> None:
    """SQLite raises OperationalError for a missing table too: that is a bug (500), a locked
    file is not; on PostgreSQL every OperationalError is the server's state."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError

    from service.dbcalls import database_state

    def wrapped(orig: Exception, cls: type[Exception] = OperationalError) -> Exception:
        return cls("SELECT 1", {}, orig)  # type: ignore[call-arg]

    assert database_state(wrapped(sqlite3.OperationalError("database is locked")))  # type: ignore[arg-type]
    assert database_state(wrapped(sqlite3.OperationalError("unable to open database file")))  # type: ignore[arg-type]
    assert not database_state(wrapped(sqlite3.OperationalError("no such table: request_log")))  # type: ignore[arg-type]
    # A file that is no (longer a) database is the operator's to mend, as a locked one is; a
    # statement's own error that merely reads alike ("malformed JSON") is a bug.
    def raised(db: str, *statements: str) -> Exception:
        conn = sqlite3.connect(db)
        try:
            for sql in statements:
                conn.execute(sql)
        except sqlite3.Error as e:
            return e
        raise AssertionError(statements)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, " * 300)
    assert database_state(wrapped(raised(str(garbage), "SELECT * FROM sqlite_master"), DatabaseError))  # type: ignore[arg-type]
    damaged = tmp_path / "damaged.db"  # a database whose table's root page a bad disk overwrote
    conn = sqlite3.connect(damaged)
    conn.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, s TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(2000)])
    conn.commit()
    conn.close()
    with open(damaged, "r+b") as f:
        f.seek(4096)  # page 2 (the default page size), the table's root
        f.write(b"\xff" * 4096)
    corrupt = raised(str(damaged), "SELECT count(*), sum(length(s)) FROM t")
    assert corrupt.sqlite_errorcode == 11  # type: ignore[attr-defined]  # SQLITE_CORRUPT, not NOTADB: the header is whole
    assert database_state(wrapped(corrupt, DatabaseError))  # type: ignore[arg-type]
    assert not database_state(wrapped(raised(":memory:", "SELECT json('{')")))  # type: ignore[arg-type]
    assert not database_state(wrapped(raised(":memory:", "CREATE TABLE t (i UNIQUE)", "INSERT INTO t VALUES (1), (1)"), DatabaseError))  # type: ignore[arg-type]
    assert database_state(wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")))  # type: ignore[arg-type]
    assert not database_state(wrapped(psycopg.errors.UndefinedTable("relation does not exist"), ProgrammingError))  # type: ignore[arg-type]





def test_readiness_reads_the_schema_so_a_file_that_is_no_database_is_not_ready(tiny_bundle: Path, tmp_path: Path) -> None:
    """SQLite answers `SELECT 1` without reading its file: readiness said "database": true for a
    file overwritten with garbage, while every request on it failed."""
    db = tmp_path / "vigil.db"
    with TestClient(create_app(settings_for(f"sqlite:///{db}", tiny_bundle, tmp_path))) as client:
        assert "vigil_database_answers NaN" in client.get("/metrics").text  # no check yet
        assert client.get("/readyz").json()["checks"]["database"] is True
        assert "vigil_database_answers 1.0" in client.get("/metrics").text
        for f in tmp_path.glob("vigil.db*"):
            f.write_bytes(b"not a database, " * 4096)  # a restore gone wrong, a disk that lost the file
        assert client.get("/readyz").json()["checks"]["database"] is False
        # Seen on /metrics without a request having written (the writer's own gauge cannot know).
        assert "vigil_database_answers 0.0" in client.get("/metrics").text
        r = client.post("/v1/requests/x/feedback", json={"label": 1})
        assert (r.status_code, r.json()["error"]["code"]) == (503, "database_unavailable"), r.text
