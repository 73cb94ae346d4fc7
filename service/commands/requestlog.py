"""`vigil audit verify`, `vigil report` and `vigil export`: the request log from the command line.

Heavy imports (numpy, scipy, pyarrow) happen inside the commands, so `vigil --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine



def when(text: str) -> dt.datetime:
    """ISO 8601 (naive means UTC) or a span back from now: 90m, 24h, 7d; not a bare number,
    which the API's `since` refuses too (fromisoformat read 20261130 as a date)."""
    # Here, not at the top: `vigil --help` does not import SQLAlchemy.
    from service.db.queries import utc
    from service.params import refuse_number, span_back

    try:
        refuse_number(text)
    except ValueError as e:  # in the API's words, so both sides say the same
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        if (back := span_back(text)) is not None:  # the API's `since` takes the same spans
            return back
        return utc(dt.datetime.fromisoformat(text))
    except OverflowError as e:  # argparse turns only ValueError and TypeError into usage errors
        raise argparse.ArgumentTypeError(f"out of range: {text!r} (before year 1 or after 9999 once in UTC)") from e
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use ISO 8601 or 90m / 24h / 7d)") from e


def _engine(args: argparse.Namespace) -> Engine:
    from sqlalchemy.engine import make_url

    from service.db.engine import make_engine
    from service.settings import Settings

    url = args.url or Settings().database_url
    parsed = make_url(url)
    # These commands only read: connecting to a missing SQLite file would create an empty one.
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not Path(parsed.database).exists():
        raise FileNotFoundError(f"no SQLite database at {parsed.database}")
    return make_engine(url)


def _window(args: argparse.Namespace) -> None:
    import datetime as dt

    from models.usage import UsageError
    from service.db.queries import WindowError, check_window

    try:
        check_window(args.since, args.until)
        # As `report` refuses it: a --since in the future selects nothing, surely a typo.
        if args.since is not None and args.until is None and args.since >= dt.datetime.now(dt.UTC):
            raise WindowError("{since} must be before {until} (default: now)")
    except WindowError as e:
        raise UsageError(e.describe("--since", "--until")) from e


def _verify(args: argparse.Namespace) -> int:
    from service.db.audit import verify

    engine = _engine(args)
    result = verify(engine)
    engine.dispose()
    if result.ok:
        print(f"OK: {result.rows} rows in {result.chains} chain(s); every hash and link verifies")
        return 0
    first = result.first
    assert first is not None
    print(f"BROKEN: {len(result.breaks)} break(s) in {result.rows} rows. First at row id={first.row_id} "
          f"request_id={first.request_id} writer={first.writer_id} seq={first.seq}: {first.reason}")  # fmt: skip
    for b in sorted(result.breaks, key=lambda b: b.row_id)[1:20]:
        print(f"  also row id={b.row_id} writer={b.writer_id} seq={b.seq}: {b.reason}")
    return 1


def _report(args: argparse.Namespace) -> int:
    from models.bundle import read_manifest
    from models.usage import UsageError, prepare_output_file
    from service.analysis.summary import summarise
    from service.db.queries import WindowError, report_window
    from service.report.html import render
    from service.settings import Settings

    try:
        since, until = report_window(args.since, args.until)
    except WindowError as e:
        raise UsageError(e.describe("--since", "--until")) from e
    prepare_output_file(Path(args.out), "--out")
    manifest = read_manifest(Path(args.bundle) if args.bundle else Settings().model_dir)
    engine = _engine(args)
    summary = summarise(engine, manifest, since, until, args.model)
    engine.dispose()
    Path(args.out).write_text(render(summary), encoding="utf-8")
    print(f"wrote {args.out}: {summary.requests} requests, drift: {summary.drift.verdict}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import shutil
    import sys
    import tempfile

    from models.usage import UsageError, prepare_output_file
    from service.db.queries import RequestFilter
    from service.exporting import to_csv, to_parquet

    _window(args)
    if args.out == "":
        raise UsageError("--out is empty: name the file to write")
    to_stdout = args.out == "-"
    out = Path(args.out or f"vigil-requests.{args.format}")
    # Through a symlink, the file it names is written and the link stays; a pipe or a device
    # (/dev/stdout) is written into, not replaced by a file (the rename below replaced them).
    target = out.resolve()
    regular = not to_stdout and (not target.exists() or target.is_file())
    if regular:
        prepare_output_file(target, "--out")
    elif not to_stdout and not os.access(target, os.W_OK):
        raise UsageError(f"--out {out}: cannot write there (permission denied)")
    engine = _engine(args)
    # Written beside the target and renamed at the end: a failed export leaves no file that
    # looks like a complete (or empty) log. Created first, so an unwritable place is refused
    # before the export runs, under the name the user gave. A stream gets a temporary file's
    # bytes once it is complete.
    try:
        if regular:
            partial = target.with_name(f".{target.name}.partial")
            partial.touch()
        else:
            handle, name = tempfile.mkstemp(suffix=f".{args.format}")
            os.close(handle)
            partial = Path(name)
    except OSError as e:
        engine.dispose()
        raise UsageError(f"--out {out}: cannot write there ({e.strerror})") from e
    try:
        n = (to_csv if args.format == "csv" else to_parquet)(engine, RequestFilter(args.since, args.until, args.model), partial)
        if regular:
            partial.replace(target)
        elif to_stdout:
            sys.stdout.flush()
            with partial.open("rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with partial.open("rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    finally:
        partial.unlink(missing_ok=True)
        engine.dispose()
    # On stdout the data is the output: the count goes to stderr.
    print(f"exported {n} requests to {'stdout' if to_stdout else out}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from service.commands import replay

    url_help = "database URL (default VIGIL_DATABASE_URL)"
    audit = sub.add_parser("audit", help="tamper evidence of the request log").add_subparsers(dest="audit_command", required=True)
    v = audit.add_parser("verify", help="check every writer's hash chain; exit 1 at the first break")
    v.add_argument("--url", default=None, help=url_help)
    v.set_defaults(func=_verify)
    for name, func, text in (("report", _report, "write a self-contained HTML report"), ("export", _export, "export the request log")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", default=None, help=url_help)
        p.add_argument("--since", type=when, default=None, help="ISO time or 90m/24h/7d ago (default: " + ("24h ago)" if name == "report" else "every row)"))
        p.add_argument("--until", type=when, default=None)
        p.add_argument("--model", default=None, help="only this model name")
        p.set_defaults(func=func)
    sub.choices["report"].add_argument("--out", default="report.html")
    sub.choices["report"].add_argument("--bundle", default=None, help="bundle whose validation reference to compare with (default VIGIL_MODEL_DIR)")
    sub.choices["export"].add_argument("--format", choices=("csv", "parquet"), default="csv")
    sub.choices["export"].add_argument("--out", default=None, help="file to write, or - for stdout (default vigil-requests.<format>)")
    replay.register(sub)
