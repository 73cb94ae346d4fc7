"""Edges of the admin side found by a review: time zones, cursors, windows, stray parameters."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from models.bundle import read_manifest
from service.analysis.summary import summarise
from service.app import create_app
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.queries import BadCursor, RequestFilter, decode_cursor, encode_cursor
from service.db.rows import COLUMNS
from service.db.tables import RequestRecord
from service.docs_errors import BY_OPERATION
from service.exporting import to_csv
from service.settings import Settings
from tests.service.logrows import record

ADMIN_KEY = "edges-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.mark.postgres
def test_hours_and_exported_times_are_utc_whatever_the_session_time_zone(pg_url: str, tiny_bundle: Path, tmp_path: Path) -> None:
    upgrade(pg_url)
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:  # a server or database set to India's time
        conn.execute(f'ALTER DATABASE "{make_url(pg_url).database}" SET timezone = \'Asia/Kolkata\'')
    at = dt.datetime(2026, 11, 30, 13, 46, 14, tzinfo=dt.UTC)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(insert(RequestRecord.__table__), [{c: record(0, received_at=at).get(c) for c in COLUMNS}])
    summary = summarise(engine, read_manifest(tiny_bundle), at - dt.timedelta(hours=1), at + dt.timedelta(hours=1), None)
    assert [h.hour for h in summary.hourly] == [dt.datetime(2026, 11, 30, 13, tzinfo=dt.UTC)]
    assert summary.hourly[0].hour.utcoffset() == dt.timedelta(0)  # 13:00Z, not 18:00+05:30
    to_csv(engine, RequestFilter(), tmp_path / "log.csv")
    assert "2026-11-30T13:46:14+00:00" in (tmp_path / "log.csv").read_text()
    engine.dispose()


def test_only_cursors_this_service_hands_out_are_taken() -> None:
    assert decode_cursor(encode_cursor(41)) == (41, None)
    assert decode_cursor(encode_cursor(2**63 - 1)) == (2**63 - 1, None)
    at = dt.datetime(2026, 12, 1, 6, 30, 15, 123000, tzinfo=dt.UTC)
    assert decode_cursor(encode_cursor(7, at)) == (7, at)  # to the millisecond, in UTC
    future = round((dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)).timestamp() * 1000)  # a listing not begun yet
    assert decode_cursor(encode_cursor(7, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)))[0] == 7  # another replica's clock
    forged_anchors = ("id:5@", "id:5@-1", "id:5@1.5", "id:5@12345", "id:5@99999999999999", "id:5@0946684800000", "id:5@5@5", f"id:5@{future}", "id:5@9999999999999")
    for text in ("id:9223372036854775808", "id:99999999999999999999", "id:-5", "id: 5", "id:\u0663", "id:0", "id:05", "row:5", *forged_anchors):
        forged = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        with pytest.raises(BadCursor):
            decode_cursor(forged)


@pytest.fixture(scope="module")
def admin_client(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('edges') / 'log.db'}"
    s = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, admin_api_keys=[ADMIN_KEY])
    with TestClient(create_app(s)) as c:
        yield c


def test_admin_requests_refuse_bad_windows_cursors_and_stray_parameters(admin_client: TestClient) -> None:
    c = admin_client
    big = base64.urlsafe_b64encode(b"id:9223372036854775808").decode().rstrip("=")
    r = c.get("/v1/requests", params={"cursor": big}, headers=ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor")  # was a 500
    r = c.get("/v1/reports/summary", params={"until": "0001-01-01T12:00:00Z"}, headers=ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_window")  # was a 500
    r = c.get("/v1/requests", params={"since": "2026-11-30T13:00:00Z", "until": "2026-11-30T12:00:00Z"}, headers=ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_window")  # as the summary answers it
    for path in ("/v1/requests", "/v1/reports/summary", "/v1/requests/abc"):
        r = c.get(path, params={"decison": "accept"}, headers=ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_parameter"), path
        assert "'decison'" in r.json()["error"]["message"]
        assert c.get(path, params={"decison": "accept"}).status_code == 401  # nothing before the key check
    assert c.get("/v1/requests", params={"decision": "accept", "limit": 5}, headers=ADMIN).status_code == 200
    # A bare number is not read as Unix time: a compact date would have filtered from 1970.
    for path, name, number in (("/v1/requests", "since", "20261130"), ("/v1/reports/summary", "until", "0.0"), ("/v1/requests", "until", " 1e9")):
        r = c.get(path, params={name: number}, headers=ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), (path, r.text)
        assert name in r.json()["error"]["message"] and "ISO 8601" in r.json()["error"]["message"]
    assert c.get("/v1/requests", params={"since": "2026-11-30", "until": "2026-12-01T00:00:00+01:00"}, headers=ADMIN).status_code == 200
    # A span the parser does not take is named as one (pydantic said "input is too short"), and
    # an offset's '+' that the query string turned into a space is pointed out.
    for path, name, value, says in (
        ("/v1/requests", "since", "1w", "a whole number of m, h or d such as 90m, 24h or 7d; not '1w'"),
        ("/v1/reports/summary", "until", "abc", "not 'abc'"),
        ("/v1/requests", "since", "2026-12-01T06:43:30 05:00", "must be sent as %2B"),
        ("/v1/requests", "since", "1 h", "not '1 h'"),
        # A span in form with too many digits is told so, not that it should be "a whole number".
        ("/v1/reports/summary", "since", "99999999999d", "a span back from now takes at most 9 digits (such as 90m, 24h or 7d); not '99999999999d'"),
        ("/v1/requests", "until", "1000000000m", "at most 9 digits"),
    ):
        r = c.get(path, params={name: value}, headers=ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request") and says in r.json()["error"]["message"], r.text
        assert ("%2B" in r.json()["error"]["message"]) is ("%2B" in says), r.text  # only for a time whose '+' was lost
    schema = c.get("/openapi.json").json()["paths"]["/v1/requests"]["get"]["parameters"]
    since = next(p["schema"] for p in schema if p["name"] == "since")
    assert {"type": "string", "pattern": "^(\\d{1,9})([mhd])$"} in since["anyOf"], since  # spans, for generated clients


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["export", "--since", "99999999d"], "out of range"),
        (["export", "--since", "0001-01-01T00:00:00+01:00"], "out of range"),
        (["report", "--until", "0001-01-01T00:00:00"], "too early"),
        (["report", "--since", "2099-01-01"], "--since must be before --until (default: now)"),
        (["export", "--since", "2099-01-01"], "--since must be before --until (default: now)"),  # as report: not 0 rows
        (["replay", "--since", "1d", "--until", "2d"], "--since must be before --until\n"),
        (["replay", "--since", "2099-01-01"], "--since must be before --until (default: now)"),
        (["report", "--since", "2099-01-01", "--until", "2098-01-01"], "--since must be before --until\n"),  # not "(default: now)": it was given
        # A bare number, as the API refuses it: fromisoformat read 20261130 as a date.
        (["report", "--since", "20261130"], "argument --since: must be an ISO 8601 time such as 2026-11-30T12:00:00Z or a span back from now such as 24h, not a number: '20261130'"),
        (["export", "--until", "0.0"], "argument --until: must be an ISO 8601 time"),
        (["replay", "--since", "20261130"], "not a number: '20261130'"),
        (["export", "--since", "9" * 5000], "... (5000 characters)"),  # cut, not echoed whole
        (["export", "--out", ""], "--out is empty"),
        (["export", "--out", "/proc/vigil-test.csv"], "--out /proc/vigil-test.csv: cannot write there"),
    ],
)
def test_log_commands_refuse_out_of_range_times_and_outputs_in_one_line(argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main as vigil

    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    out = ["--out", str(tmp_path / "r.html")] if argv[0] == "report" else []
    try:
        code = vigil([*argv, "--url", url, *out])
    except SystemExit as e:  # argparse refuses a bad --since itself, with its usage line
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_the_report_draws_empty_hours_and_no_line_across_them() -> None:
    from service.report.html import every_hour
    from service.report.svg import lines
    from service.schemas_report import HourPublic

    def hour(h: int, rate: float) -> HourPublic:
        return HourPublic(hour=dt.datetime(2026, 11, 30, h, tzinfo=dt.UTC), requests=10, predictions=10,
                          decisions={"accept": 9, "abstain": 0, "reject_ood": 1}, ood_rate=rate, abstention_rate=0.0)  # fmt: skip

    hours, complete = every_hour([hour(9, 0.1), hour(13, 0.2)])
    assert complete and [h.hour.hour for h in hours] == [9, 10, 11, 12, 13]
    assert [h.requests for h in hours] == [10, 0, 0, 0, 10] and hours[2].ood_rate is None
    chart = lines("Rates per hour", [f"{h.hour.hour}h" for h in hours], {"OOD rate": [h.ood_rate for h in hours]})
    assert chart.count("<polyline") == 2  # 09h and 13h apart, not joined
    far = hour(9, 0.1).model_copy(update={"hour": dt.datetime(2027, 1, 30, 9, tzinfo=dt.UTC)})
    assert every_hour([hour(9, 0.1), far]) == ([hour(9, 0.1), far], False)  # over a month: as given


def test_feedback_refuses_what_is_not_json_and_counts_characters(admin_client: TestClient) -> None:
    c = admin_client
    path = "/v1/requests/abc/feedback"
    r = c.post(path, content=b'{"label": 1}', headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert r.json()["error"]["message"] == BY_OPERATION[("post", "/v1/requests/{request_id}/feedback", 415)][1]  # as /docs shows it
    r = c.post(path, content=b"{" + b" " * (3 * 1024 * 1024 - 2) + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["message"] == BY_OPERATION[("post", "/v1/requests/{request_id}/feedback", 413)][1]
    r = c.post(path, json={"label": 1, "note": "x" * 2001})
    assert r.status_code == 422 and "at most 2000 characters, got 2001" in r.json()["error"]["message"]  # not "items"
    r = c.get("/v1/requests", params={"model": "m" * 101}, headers=ADMIN)
    assert r.status_code == 422 and "at most 100 characters, got 101" in r.json()["error"]["message"]
    assert c.post(path, content=b'{"label": 1}').json()["error"]["code"] == "unsupported_media_type"  # no Content-Type
    assert c.post(path, content=b'{"label": 1}', headers={"content-type": "application/json; charset=utf-8"}).status_code == 404


@pytest.mark.parametrize("debug", ["", "1"])
def test_a_command_that_breaks_exits_70_with_its_traceback_not_1_or_2(
    debug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 is a failed audit (`vigil replay`, `vigil audit verify`) and 2 a user's mistake: a bug is neither."""
    from service import cli

    def broken(args: object) -> int:
        raise KeyError("a bug inside the command")

    monkeypatch.setattr(cli, "_db_current", broken)
    monkeypatch.setenv("VIGIL_DEBUG", debug)
    assert cli.main(["db", "current", "--url", f"sqlite:///{tmp_path / 'log.db'}"]) == cli.BUG == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug inside the command" in err
    assert err.rstrip().endswith("vigil db: internal error (a bug, not a mistake of yours): KeyError; exit status 70")


def test_a_file_that_is_no_database_is_a_mistake_not_a_bug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main as vigil

    log = tmp_path / "requests.log"
    log.write_text("GET / 200\n")  # the access log passed where the request log's database goes
    assert vigil(["audit", "verify", "--url", f"sqlite:///{log}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "vigil audit: error: database error: file is not a database"


def test_a_users_mistake_keeps_its_one_line_and_status_2_unless_debugging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import cli

    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/vigil"  # nothing listens on port 1
    assert cli.main(["db", "current", "--url", unreachable]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil db: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("VIGIL_DEBUG", "1")
    assert cli.main(["db", "current", "--url", unreachable]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("vigil db: error:")


@pytest.mark.parametrize(
    ("debug", "shown"),
    [("1", True), ("TRUE", True), ("on", True), ("Yes", True), ("y", True), ("t", True),
     ("off", False), ("0", False), ("False", False), ("n", False), ("", False), ("maybe", False)],
)
def test_vigil_debug_takes_the_words_of_a_bool_setting(
    debug: str, shown: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/settings.md calls VIGIL_DEBUG a bool: `off` showed the traceback, as any unknown word did."""
    from models.usage import UsageError
    from service import cli

    def refused(args: object) -> int:
        raise UsageError("a mistake of the user's")

    monkeypatch.setattr(cli, "_db_current", refused)
    monkeypatch.setenv("VIGIL_DEBUG", debug)
    assert cli.main(["db", "current", "--url", f"sqlite:///{tmp_path / 'log.db'}"]) == 2
    err = capsys.readouterr().err
    assert ("Traceback" in err) is shown, err
    assert err.rstrip().splitlines()[-1] == "vigil db: error: a mistake of the user's"


def test_a_span_keeps_its_window_on_every_page(tiny_bundle: Path, tmp_path: Path) -> None:
    """`since=1m` is measured back from the first page's time on the later pages too: measured
    from each page's own time, the window moved and its oldest rows fell out of the listing."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    s = Settings(model_dir=tiny_bundle, database_url=url, admin_api_keys=[ADMIN_KEY])
    with TestClient(create_app(s)) as c:
        engine = make_engine(url)
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as conn:  # inserted oldest first: the listing (newest id first) ends on the edge row
            at = [now - dt.timedelta(seconds=secs) for secs in (57, 30, 20, 10)]
            conn.execute(insert(RequestRecord.__table__), [{col: record(i, received_at=t).get(col) for col in COLUMNS} for i, t in enumerate(at)])
        engine.dispose()
        first = c.get("/v1/requests", params={"since": "1m", "limit": 3}, headers=ADMIN).json()
        assert len(first["items"]) == 3 and first["next_cursor"]
        time.sleep(4)  # the edge row, 57 s old at the first page, is past a minute old now
        rest = c.get("/v1/requests", params={"since": "1m", "limit": 3, "cursor": first["next_cursor"]}, headers=ADMIN).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert c.get("/v1/requests", params={"since": "1m", "limit": 10}, headers=ADMIN).json()["items"] == first["items"]  # a new listing: a new window


def test_a_row_not_stored_yet_is_a_404_that_says_to_retry(admin_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose row is still queued is not unknown: its own code and a Retry-After, so a
    client does not give up on an id it was just given (a walkthrough read the 404 as final)."""
    writer = admin_client.app.state.ctx.writer  # type: ignore[attr-defined]
    monkeypatch.setattr(writer, "pending_status", lambda rid: 200 if rid == "queued-request-id" else None)
    queued = admin_client.get("/v1/requests/queued-request-id", headers=ADMIN)
    assert (queued.status_code, queued.json()["error"]["code"], queued.headers.get("retry-after")) == (404, "not_stored_yet", "1")
    unknown = admin_client.get("/v1/requests/never-made-request-id", headers=ADMIN)
    assert (unknown.status_code, unknown.json()["error"]["code"], unknown.headers.get("retry-after")) == (404, "unknown_request", None)
