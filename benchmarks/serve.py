"""Start a real server process, drive it with the load generator process, read its peak RSS.

The service is started exactly as a user starts it (`vigil serve --migrate`, settings
from VIGIL_ variables) with its request log in a fresh SQLite file; the naive baseline
runs the same app through `benchmarks.naive`. Each is stopped with SIGTERM afterwards
and the rows it logged are counted, to show that logging was on for every request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the service's inference process among them), Linux."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc status")


def pss_mb(pid: int) -> float:
    """Proportional set size in MiB: resident memory with pages shared between processes
    (torch's libraries, mapped by parent and child alike) split among them, so the PSS
    of all the service's processes adds up to what it occupies, unlike their RSS."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no Pss in smaps_rollup")


def memory(pid: int) -> dict[str, Any]:
    """Peak RSS of every process of the server, and their summed PSS now (after the load)."""
    tree = process_tree(pid)
    peaks = [peak_rss_mb(p) for p in tree]
    return {"peak_rss_mb": max(peaks), "peak_rss_mb_by_process": peaks, "pss_mb_total": round(sum(pss_mb(p) for p in tree), 1)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of the process and its children (all their threads)."""
    total = 0.0
    for p in process_tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def load(pid: int, port: int, images: Path, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    """Run the load generator; add the server's CPU ms per request (robust to a busy machine)."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--images", str(images)]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup)]
    cpu0 = cpu_seconds(pid)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = dict(json.loads(done.stdout))
    result["server_cpu_ms_per_request"] = round((cpu_seconds(pid) - cpu0) * 1000 / max(1, result["requests_with_warmup"]), 2)
    return result


def measure(model_dir: Path, naive: bool, work: Path, images: Path, levels: list[int], duration: float, warmup: float) -> dict[str, Any]:
    """Serve `model_dir`, load it at each concurrency; returns per-level results, peak RSS, rows logged."""
    port = free_port()
    db = work / f"log-{port}.db"
    env = {**os.environ, "VIGIL_DATABASE_URL": f"sqlite:///{db}", "VIGIL_MODEL_DIR": str(model_dir)}
    if naive:
        cmd = [sys.executable, "-m", "benchmarks.naive", "--model", str(model_dir), "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--migrate"]
    with open(work / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, proc)
            result: dict[str, Any] = {"levels": {c: load(proc.pid, port, images, c, duration, warmup) for c in levels}}
            result.update(memory(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    with sqlite3.connect(db) as conn:
        result["rows_logged"] = conn.execute("SELECT count(*) FROM request_log").fetchone()[0]
    return result
