"""Request-log benchmark: the writer's sustained rows/s, and what logging costs the service.

    .venv/bin/python -m benchmarks.log_writer [--rows 20000] [--rounds 6] [--duration 4]

1. Writer alone: pre-built, realistic rows (probabilities, scores, chain hashes) are
   submitted as fast as possible; rows/s = rows / time until `stop()` returns, i.e.
   until the last batch is committed. Into SQLite (temp file) and PostgreSQL (a
   throwaway database on VIGIL_TEST_POSTGRES_URL; skipped if unreachable).
2. Service: two real uvicorn processes on the default bundle (benchmarks.log_serve), the
   same app logging to SQLite in one, with its writer swapped for a no-op in the other. The load generator
   (benchmarks.loadgen) drives them in alternating rounds, so that the machine's own
   load drifts affect both alike; the medians are compared. Throughput on a shared
   machine is noisy, so the server's CPU time per request (/proc) is printed too: on a
   CPU-bound service it is what throughput is the inverse of. Not a timed test: it prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.run import write_images
from benchmarks.serve import _wait_ready, cpu_seconds, free_port
from service.settings import DEFAULT_MODEL_DIR

PG_ADMIN = os.environ.get("VIGIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def rows(n: int) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    return [{"request_id": uuid.uuid4().hex, "received_at": now, "endpoint": "/v1/predict", "client_id": "ip:" + "a" * 24,
             "model_name": "mnist-default", "model_version": "1", "input_sha256": "f" * 64, "input_bytes": 300,
             "input_width": 28, "input_height": 28, "input_mode": "L", "predicted_label": i % 10, "class_name": str(i % 10),
             "probabilities": [0.91] + [0.01] * 9, "confidence": 0.91, "predictive_entropy": 0.4, "mutual_information": None,
             "failure_method": "msp", "failure_score": 0.09, "failure_threshold": 0.33, "failure_flagged": False,
             "ood_method": "mahalanobis", "ood_score": 120.5, "ood_threshold": 340.0, "ood_flagged": False,
             "prediction_set": [i % 10], "decision": "accept", "latency_ms": 3.1, "http_status": 200} for i in range(n)]  # fmt: skip


def writer_rate(url: str, n: int, work: Path) -> tuple[float, float]:
    """(rows/s, CPU µs per row in this process: submit + chain + insert, all threads)."""
    from service.db.engine import make_engine
    from service.db.migrate import upgrade
    from service.db.spool import Spool
    from service.db.writer import LogWriter

    upgrade(url)
    engine = make_engine(url)
    batch = rows(n)
    w = LogWriter(engine, n + 1, 500, 100, spool=Spool(work / f"spool-{uuid.uuid4().hex}.jsonl"))
    w.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for r in batch:
        w.submit(r)
    w.stop(timeout=600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    engine.dispose()
    assert w.written == n and w.spooled == 0, (w.written, w.spooled)
    return n / elapsed, 1e6 * cpu / n


def pg_database() -> tuple[str, str] | None:
    import psycopg
    from sqlalchemy import make_url

    admin = make_url(PG_ADMIN)
    name = f"vigil_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    return admin.set(database=name).render_as_string(hide_password=False), name


def drop_pg(name: str) -> None:
    import psycopg
    from sqlalchemy import make_url

    dsn = make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(log_on: bool, work: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE_URL": f"sqlite:///{work / f'log-{port}.db'}", "VIGIL_MODEL_DIR": str(DEFAULT_MODEL_DIR)}
    tid = work / f"writer-{port}.tid"
    cmd = [sys.executable, "-m", "benchmarks.log_serve", str(port), "on" if log_on else "off", str(tid)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_ready(port, proc)
    return proc, port, tid


def thread_cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(proc: subprocess.Popen[bytes], port: int, tid: Path, images: Path, concurrency: int, duration: float) -> tuple[float, float, float]:
    """One closed-loop round (benchmarks.loadgen, no warm-up): req/s, server CPU ms per
    request, and the log-writer thread's share of it (ms per request; 0 when off)."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--images", str(images)]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration), "--warmup", "0"]
    writer = int(tid.read_text()) if tid.exists() else None
    cpu0 = cpu_seconds(proc.pid)
    w0 = thread_cpu_seconds(proc.pid, writer) if writer else 0.0
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    time.sleep(0.3)  # the last batch is flushed within flush_ms: count it in this round
    cpu = cpu_seconds(proc.pid) - cpu0
    w = (thread_cpu_seconds(proc.pid, writer) - w0) if writer else 0.0
    n = max(int(r["requests"]), 1)
    return float(r["throughput"]), 1000 * cpu / n, 1000 * w / n


def service_rates(work: Path, rounds: int, duration: float, concurrency: int) -> dict[str, dict[str, list[float]]]:
    """Per arm and round: throughput (req/s), server CPU per request (ms), writer thread CPU per request (ms)."""
    images = write_images(work / "images")
    procs = {on: start(on, work) for on in (True, False)}
    out: dict[str, dict[str, list[float]]] = {arm: {"rps": [], "cpu_ms": [], "writer_ms": []} for arm in ("on", "off")}
    try:
        for on in (True, False):  # warm both up: first requests, allocator, SQLite file growth
            load(*procs[on], images, concurrency, 1.0)
        for _ in range(rounds):
            for on in (True, False):
                figures = load(*procs[on], images, concurrency, duration)
                for key, value in zip(("rps", "cpu_ms", "writer_ms"), figures, strict=True):
                    out["on" if on else "off"][key].append(round(value, 3))
    finally:
        for proc, _, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return out


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rate, cpu = writer_rate(f"sqlite:///{work / 'w.db'}", args.rows, work)
        print(f"writer -> SQLite:     {rate:7.0f} rows/s, {cpu:5.0f} µs CPU/row ({args.rows} rows)")
        pg = pg_database()
        if pg is None:
            print("writer -> PostgreSQL: skipped (no server at VIGIL_TEST_POSTGRES_URL)")
        else:
            try:
                rate, cpu = writer_rate(pg[0], args.rows, work)
                print(f"writer -> PostgreSQL: {rate:7.0f} rows/s, {cpu:5.0f} µs CPU/row in the client ({args.rows} rows)")
            finally:
                drop_pg(pg[1])
        if args.rounds == 0:  # writer figures only
            return
        r = service_rates(work, args.rounds, args.duration, args.concurrency)
        med = {arm: {k: statistics.median(v) for k, v in r[arm].items()} for arm in r}
        for arm in ("on", "off"):
            print(f"service, logging {arm + ':':4} {med[arm]['rps']:7.1f} req/s, {med[arm]['cpu_ms']:.3f} ms server CPU/request "
                  f"(rounds: {r[arm]['rps']} req/s; {r[arm]['cpu_ms']} ms)")  # fmt: skip
        rps_cost = 100 * (med["off"]["rps"] - med["on"]["rps"]) / med["off"]["rps"]
        cpu_cost = 100 * (med["on"]["cpu_ms"] - med["off"]["cpu_ms"]) / med["on"]["cpu_ms"]
        writer_share = 100 * med["on"]["writer_ms"] / med["on"]["cpu_ms"]
        print(f"logging costs {rps_cost:+.1f}% of throughput and {cpu_cost:+.1f}% of server CPU per request (medians; budget 10%)")
        print(f"the writer thread itself uses {1000 * med['on']['writer_ms']:.0f} µs CPU per request = {writer_share:.1f}% of the server's CPU")

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=6, help="alternating on/off rounds (0: writer only)")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per round")
    p.add_argument("--concurrency", type=int, default=8)
    main(p.parse_args())
