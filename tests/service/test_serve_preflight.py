"""`vigil serve` says in one line why it cannot start, and never starts uvicorn then."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.bundle import load_bundle
from service import preflight
from service.cli import main as vigil

#: The real check, kept before `started` replaces it.
REAL_PORT_TAKEN = preflight.port_taken


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every uvicorn.run call instead of serving; the mmap threshold must be fixed
    first (recorded, not done: this test process keeps glibc's defaults)."""
    calls: list[object] = []
    monkeypatch.setattr("service.malloc.fix_mmap_threshold", lambda: calls.append("mmap threshold") or True)
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(app))
    # Nothing is served, so the default port may be anyone's (a `make run` beside the tests).
    monkeypatch.setattr("service.preflight.port_taken", lambda host, port: None)
    return calls


def serve(url: str, model: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setenv("VIGIL_DATABASE_URL", url)
    return vigil(["serve", "--model", str(model), *extra])


def test_an_unmigrated_database_is_refused_with_the_command_that_fixes_it(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert serve(url, tiny_bundle, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vigil serve: the database file") and "vigil db upgrade" in err and "Traceback" not in err
    assert started == [] and not (tmp_path / "log.db").exists()  # refused without leaving an empty file behind
    (tmp_path / "log.db").touch()  # a file without the schema: refused as not migrated
    assert serve(url, tiny_bundle, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vigil serve: database") and "vigil db upgrade" in err and "Traceback" not in err
    assert started == []
    # The fix it names works: migrated, the same command starts the server.
    assert vigil(["db", "upgrade", "--url", url]) == 0
    assert serve(url, tiny_bundle, monkeypatch) == 0
    assert len(started) == 1  # the tests' apps compute in-thread: glibc's defaults kept for torch


def test_the_mmap_threshold_is_fixed_before_serving_only_when_torch_runs_elsewhere(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monkeypatch.setenv("VIGIL_INFERENCE_PROCESS", "true")
    assert serve(url, tiny_bundle, monkeypatch, "--migrate") == 0
    assert len(started) == 2 and started[0] == "mmap threshold"  # before the server starts
    monkeypatch.setenv("VIGIL_INFERENCE_PROCESS", "false")
    assert serve(url, tiny_bundle, monkeypatch, "--migrate") == 0
    assert len(started) == 3 and started[2] != "mmap threshold"  # in-thread: one more app, no fix


def test_the_server_serves_the_bundle_the_preflight_loaded(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serve(f"sqlite:///{tmp_path / 'log.db'}", tiny_bundle, monkeypatch, "--migrate") == 0
    # Start-up would load, hash and build the bundle a second time in the lifespan.
    monkeypatch.setattr("service.app.load_bundle", lambda *a: pytest.fail("the bundle was loaded twice"))
    with TestClient(started[-1]) as client:
        assert client.get("/v1/models").json()[0]["name"] == load_bundle(tiny_bundle).manifest.name


def test_a_missing_bundle_is_refused(tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve(f"sqlite:///{tmp_path / 'log.db'}", tmp_path / "no-bundle", monkeypatch, "--migrate") == 2
    assert "cannot load the model bundle" in capsys.readouterr().err
    assert started == []


def test_an_unreachable_database_is_refused_without_showing_its_password(
    tiny_bundle: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    assert serve("postgresql+psycopg://vigil:s3cret@127.0.0.1:1/test", tiny_bundle, monkeypatch, "--migrate") == 2
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "127.0.0.1:1" in err
    assert "s3cret" not in err
    assert started == []


@pytest.mark.parametrize(
    ("env", "argv", "words"),
    [
        ({"VIGIL_DATABASE_URL": "notaurl"}, [], "bad database URL"),
        ({"VIGIL_DATABASE_URL": "mysql://u:secret@127.0.0.1/x"}, [], "a driver or module is not installed"),
        ({"VIGIL_MAX_UPLOAD_BYTES": "abc"}, [], "VIGIL_MAX_UPLOAD_BYTES: Input should be a valid integer"),
        ({"VIGIL_API_KEYS": "plainkey"}, [], "list settings take JSON"),
        ({"VIGIL_PORT": "tcp://10.0.0.1:8000"}, [], "VIGIL_PORT: Input should be a valid integer, unable to parse string as an integer (Kubernetes sets"),
        ({"VIGIL_ENVIRONMENT": "production"}, [], "invalid settings: set VIGIL_CLIENT_ID_SALT to a secret value in production"),
        ({"VIGIL_LOG_SPOOL_PATH": "/proc/no-such-dir/spool.jsonl"}, [], "the request-log spool /proc/no-such-dir/spool.jsonl cannot be written"),
        # A malformed digest was a traceback and "internal error (a bug)", exit status 70.
        ({"VIGIL_API_KEYS": '["raw-key", "hmac-sha256:zz"]'}, [],
         "vigil serve: error: invalid settings: VIGIL_API_KEYS: entry 2 of 2: a configured key digest must be hmac-sha256: followed by 64 hex digits"),
        ({"VIGIL_ADMIN_API_KEYS": '["hmac-sha256:secretish"]'}, [], "invalid settings: VIGIL_ADMIN_API_KEYS: entry 1 of 1:"),
    ],
    ids=["not-a-url", "driver-missing", "bad-setting", "list-not-json", "k8s-port", "production-check", "spool-unwritable", "bad-digest", "bad-admin-digest"],
)
def test_bad_settings_are_one_line_not_a_traceback(
    env: dict[str, str], argv: list[str], words: str, tiny_bundle: Path, tmp_path: Path,
    started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert vigil(["serve", "--model", str(tiny_bundle), "--migrate", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and ":secret@" not in err, err
    assert "zz" not in err and "secretish" not in err  # a digest, or a key, is never echoed
    assert started == []
    assert "_API_KEYS: entry" not in words or not (tmp_path / "log.db").exists()  # a bad digest: refused before --migrate


def test_a_port_out_of_range_is_refused(started: list[object], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        vigil(["serve", "--port", "99999"])  # uvicorn would listen on 99999 mod 65536
    assert e.value.code == 2 and "not a port" in capsys.readouterr().err
    assert started == []


def test_port_0_asks_for_any_free_port_as_vigil_port_0_does(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: ports.append(kw.get("port")))
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert serve(url, tiny_bundle, monkeypatch, "--migrate", "--port", "0") == 0
    monkeypatch.setenv("VIGIL_PORT", "0")
    assert serve(url, tiny_bundle, monkeypatch, "--migrate") == 0
    assert ports == [0, 0]


def test_a_manifest_that_breaks_its_schema_is_one_line(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest.update(temperature="hot", bogus=1)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    assert serve(f"sqlite:///{tmp_path / 'log.db'}", broken, monkeypatch, "--migrate") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "temperature" in err and "bogus" in err and "pydantic.dev" not in err, err


def test_serve_bounds_the_graceful_shutdown(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stalled upload must not hold the process past the orchestrator's SIGKILL."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("VIGIL_SHUTDOWN_TIMEOUT_S", "7")
    assert serve(f"sqlite:///{tmp_path / 'log.db'}", tiny_bundle, monkeypatch, "--migrate") == 0
    assert calls[0]["timeout_graceful_shutdown"] == 7.0


def test_a_misspelt_setting_is_named_at_start(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIL_DATABSE_URL", "postgresql+psycopg://db/vigil")  # sic: the default database is used
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path))  # read by training, not a typo
    monkeypatch.setenv("VIGIL_PORT_8000_TCP_ADDR", "10.0.0.1")  # what Kubernetes adds for a Service named vigil
    monkeypatch.setenv("VIGIL_SERVICE_HOST", "10.0.0.1")
    monkeypatch.chdir(tmp_path)
    # Named before the preflight, whose failure (here: no vigil.db) it most likely explains.
    assert vigil(["serve", "--model", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "vigil serve: warning: VIGIL_DATABSE_URL is set but no setting has that name (misspelt?); see docs/settings.md"
    assert len(err) == 2 and "vigil.db does not exist" in err[1] and started == []


def test_a_misspelt_secret_file_is_named_at_start(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "vigil_databse_url").write_text("postgresql+psycopg://db/vigil")  # sic: ignored by pydantic-settings
    (secrets / "vigil_api_key_pepper").write_text("pepper")  # a setting: read, not named
    (secrets / "..data").mkdir()  # Kubernetes' own entries
    monkeypatch.setenv("VIGIL_SECRETS_DIR", str(secrets))
    monkeypatch.chdir(tmp_path)
    assert vigil(["serve", "--model", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "vigil serve: warning: VIGIL_SECRETS_DIR holds vigil_databse_url, which no setting reads (misspelt?); see docs/settings.md"
    assert len(err) == 2 and "vigil.db does not exist" in err[1] and started == []


def test_a_database_a_newer_version_migrated_is_named_so_not_sent_to_upgrade(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a rollback the database is at a revision this code lacks: `vigil db upgrade`, which
    both used to advise, fails there ("Can't locate revision")."""
    from sqlalchemy import text

    from service.db.engine import make_engine

    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert vigil(["db", "upgrade", "--url", url]) == 0
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    capsys.readouterr()
    assert vigil(["db", "current", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "revision 0099 is not one this version of Vigil knows" in out and "vigil db upgrade" not in out
    assert vigil(["db", "current", "--check", "--url", url]) == 1
    for extra in ((), ("--migrate",)):
        assert serve(url, tiny_bundle, monkeypatch, *extra) == 2
        err = capsys.readouterr().err
        assert "revision 0099 is not one this version of Vigil knows" in err and "upgrade" not in err and "Traceback" not in err
    assert started == []


def test_a_port_in_use_is_refused_before_the_model_loads(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn found a taken port only after the model was loaded and warmed, and said so in a
    JSON log line with exit status 3; every other start problem is one line and status 2."""
    import socket

    loaded: list[object] = []
    monkeypatch.setattr("service.preflight.preflight", lambda settings: loaded.append(settings))  # the model load
    monkeypatch.setattr("service.preflight.port_taken", REAL_PORT_TAKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve(f"sqlite:///{tmp_path / 'log.db'}", tiny_bundle, monkeypatch, "--host", "127.0.0.1", "--port", str(port)) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in err and "Traceback" not in err
    assert (started, loaded) == ([], [])


def test_serve_raises_its_open_file_limit_to_the_hard_one(
    tiny_bundle: Path, tmp_path: Path, started: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One descriptor per connection: with the common soft limit of 1024, a thousand idle
    connections refused every other client, health probes included."""
    import subprocess
    import sys

    probe = ("import resource; from service.preflight import raise_open_file_limit; soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
             "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard)); print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    returned, soft, hard = (int(v) for v in done.stdout.split())
    assert returned == soft and soft > 64 and (soft == hard or hard == -1), done.stdout
    monkeypatch.setattr("service.preflight.raise_open_file_limit", lambda: started.append("open files") or 0)
    assert serve(f"sqlite:///{tmp_path / 'log.db'}", tiny_bundle, monkeypatch, "--migrate") == 0
    assert started[0] == "open files" and len(started) == 2  # before uvicorn runs
