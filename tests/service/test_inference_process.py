"""Inference in a child process (the service's default): the same numbers as in-thread,
each caller its own rows through the pipelined pipe, a dead child replaced, a clean
shutdown, and failures answered as logged errors rather than bare 500s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select

from benchmarks.bundles import untrained_ensemble
from benchmarks.serve import cpu_seconds, process_tree
from models.bundle import load_bundle
from models.pipeline import PipelineOutput
from service.app import create_app
from service.db.engine import make_engine
from service.db.tables import RequestRecord
from service.errors import ApiError
from service.inference_process import (
    InferenceFailed,
    InferenceUnavailable,
    ProcessCompute,
    decode_output,
    decode_pixels,
    encode_error,
    encode_output,
    encode_pixels,
)
from service.runtime import InferenceRuntime
from service.settings import Settings
from tests.images import digit_png
from tests.service.test_batching import assert_same, images


@pytest.fixture(scope="module")
def ensemble_odin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_ensemble(tmp_path_factory.mktemp("bundles") / "ens", members=3)


def in_thread(model_dir: Path) -> InferenceRuntime:
    rt = InferenceRuntime(load_bundle(model_dir), 1, max_wait_ms=0)
    rt.warm_up()
    return rt


def in_child(model_dir: Path, **kw: float) -> InferenceRuntime:
    rt = InferenceRuntime(load_bundle(model_dir), 1, process_model_dir=model_dir, **kw)  # type: ignore[arg-type]
    rt.warm_up()
    return rt


def gone(pid: int) -> bool:
    """Exited (a zombie has closed its pipes too) or reaped."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


def test_pixels_and_answers_cross_the_pipe_unchanged(ensemble_odin: Path) -> None:
    x = images(5)
    assert torch.equal(decode_pixels(encode_pixels(x)), x)
    rt = in_thread(ensemble_odin)
    try:
        out = rt.pipeline.run(x)
    finally:
        rt.close()
    msg = encode_output(out)
    (size,) = struct.unpack_from("<I", msg)
    assert (4 + size) % 8 == 0  # the first tensor starts aligned
    back = decode_output(msg)
    for name in ("probs", "sample_probs", "predictive_entropy", "mutual_information", "failure_score", "ood_score", "prediction_sets"):
        a, b = getattr(out, name), getattr(back, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_broken_messages_are_refused() -> None:
    msg = encode_pixels(images(2))
    with pytest.raises(ValueError, match="does not hold"):
        decode_pixels(msg[:-4])
    with pytest.raises(InferenceFailed, match="ZeroDivisionError: no"):
        decode_output(encode_error("ZeroDivisionError: no"))
    out = PipelineOutput(*(torch.zeros(s) for s in [(1, 10), (1, 1, 10), (1,), (1,), (1,), (1,), (1, 10)]))
    with pytest.raises(InferenceFailed, match="malformed"):
        decode_output(encode_output(out) + b"\0\0\0\0")


def test_child_answers_equal_in_thread_answers(ensemble_odin: Path) -> None:
    x = images(12, seed=3)
    ref = in_thread(ensemble_odin)
    rt = in_child(ensemble_odin, max_wait_ms=0)

    async def go(r: InferenceRuntime) -> tuple[PipelineOutput, list[PipelineOutput]]:
        return await r.run(x), [await r.run(x[i : i + 1]) for i in range(len(x))]

    try:
        assert rt.remote is not None and rt.remote.pid not in (None, os.getpid())
        (whole, single), (ref_whole, _) = asyncio.run(go(rt)), asyncio.run(go(ref))
    finally:
        rt.close()
        ref.close()
    assert_same(whole, ref_whole)
    for i, one in enumerate(single):
        assert_same(whole.row(i), one)


def test_concurrent_callers_through_the_pipe_get_their_own_rows(ensemble_odin: Path) -> None:
    ref = in_thread(ensemble_odin)
    x = images(24, seed=4)
    expected = ref.pipeline.run(x.contiguous(memory_format=torch.channels_last)).with_values()
    ref.close()
    rt = in_child(ensemble_odin, max_wait_ms=2, max_batch=4)  # several batches in flight

    async def go() -> list[PipelineOutput]:
        return list(await asyncio.gather(*(rt.run(x[i : i + 1]) for i in range(len(x)))))

    try:
        outs = asyncio.run(go())
        batches = rt.batcher.batches
    finally:
        rt.close()
    assert batches >= 6  # 24 callers, at most 4 a batch
    for i, one in enumerate(outs):
        assert_same(one, expected.row(i))


def test_a_dead_child_is_replaced(ensemble_odin: Path) -> None:
    rt = in_child(ensemble_odin, max_wait_ms=0)
    x = images(2, seed=5)
    try:
        first = asyncio.run(rt.run(x))
        assert rt.remote is not None and rt.remote.pid is not None
        old = rt.remote.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not gone(old) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The batch sent to the dead child fails as a retryable 503 ...
        with pytest.raises(ApiError) as err:
            asyncio.run(rt.run(x))
        assert (err.value.status, err.value.code) == (503, "inference_unavailable")
        assert err.value.headers == {"Retry-After": "1"}
        # ... and a new child serves the next one, with the same numbers.
        again = asyncio.run(rt.run(x))
        assert rt.remote.restarts == 1 and rt.remote.pid not in (None, old)
    finally:
        rt.close()
    assert_same(again, first)


def test_shutdown_answers_every_queued_request_then_stops_the_child(ensemble_odin: Path) -> None:
    rt = in_child(ensemble_odin, max_wait_ms=0, max_batch=2)
    assert rt.remote is not None
    pid = rt.remote.pid
    assert pid is not None
    x = images(10, seed=6)

    async def go() -> list[PipelineOutput]:
        tasks = [asyncio.ensure_future(rt.run(x[i : i + 1])) for i in range(len(x))]
        await asyncio.sleep(0)  # all submitted; most still queued
        await rt.aclose()
        return [t.result() for t in tasks]

    outs = asyncio.run(go())
    assert [len(o.probs) for o in outs] == [1] * 10
    assert gone(pid) and rt.remote.pid is None


def test_a_bundle_the_child_cannot_load_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(InferenceUnavailable, match="failed to start"):
        ProcessCompute(tmp_path / "no-bundle", 1, 32).start()


def test_a_failed_computation_is_a_logged_500(tiny_bundle: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, inference_process=False)
    png = digit_png(images(1)[0])
    with TestClient(create_app(settings)) as client:

        def broken(pixels: torch.Tensor) -> PipelineOutput:
            raise RuntimeError("kernel exploded")

        client.app.state.ctx.runtime.batcher._compute = broken  # type: ignore[attr-defined]
        r = client.post("/v1/predict", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "inference_error"
    engine = make_engine(url)
    with engine.connect() as conn:
        logged = list(conn.execute(select(RequestRecord)))
    engine.dispose()
    assert [(row.request_id, row.http_status, row.error_code) for row in logged] == [(r.json()["error"]["request_id"], 500, "inference_error")]


def test_the_service_default_serves_from_a_child_process(tiny_bundle: Path, tmp_path: Path) -> None:
    assert Settings.model_fields["inference_process"].default is True
    png = digit_png(images(1, seed=7)[0])
    answers = {}
    for mode in (True, False):
        settings = Settings(model_dir=tiny_bundle, database_url=f"sqlite:///{tmp_path / f'{mode}.db'}", migrate_on_start=True, inference_process=mode)
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/predict", content=png, headers={"content-type": "image/png"})
            assert r.status_code == 200, r.text
            answers[mode] = r.json()
            restarts_line = [x for x in client.get("/metrics").text.splitlines() if x.startswith("vigil_inference_process_restarts")]
            remote = client.app.state.ctx.runtime.remote  # type: ignore[attr-defined]
            pid = None if remote is None else remote.pid
        if mode:  # a child of this process served it, and the shutdown stopped it
            assert pid is not None and pid != os.getpid() and gone(pid)
            assert restarts_line == ["vigil_inference_process_restarts_total 0.0"]
        else:
            assert remote is None and restarts_line == []
    assert answers[True]["probabilities"] == pytest.approx(answers[False]["probabilities"], abs=2e-6)
    assert answers[True]["prediction"] == answers[False]["prediction"]
    assert answers[True]["ood"]["score"] == pytest.approx(answers[False]["ood"]["score"], rel=1e-4, abs=1e-6)


def test_the_benchmark_counts_the_child_process(ensemble_odin: Path) -> None:
    rt = in_child(ensemble_odin)
    try:
        assert rt.remote is not None and rt.remote.pid in process_tree(os.getpid())
    finally:
        rt.close()


def own_cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_benchmark_cpu_includes_children() -> None:
    # A child that burns ~0.6 s of CPU and then waits: counted only if children are summed.
    busy = subprocess.Popen([sys.executable, "-c", "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\nsys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(os.getpid()) - own_cpu_seconds() < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(os.getpid()) - own_cpu_seconds() >= 0.5
    finally:
        busy.communicate(b"")


def test_failed_restarts_are_counted_and_backed_off(tmp_path: Path) -> None:
    remote = ProcessCompute(tmp_path / "no-bundle", 1, 32)  # as if the bundle left the disk after start
    with pytest.raises(InferenceUnavailable, match="failed to start"):
        remote.restart(remote.generation)
    assert (remote.restarts, remote.failed_restarts) == (1, 1)
    started = time.monotonic()
    # The next batch's restart is not tried at once (each try imports torch in a new process):
    with pytest.raises(InferenceUnavailable, match="next try in"):
        remote.restart(remote.generation)
    assert time.monotonic() - started < 0.5 and (remote.restarts, remote.failed_restarts) == (1, 1)
    remote._retry_at = 0.0  # the back-off is over
    with pytest.raises(InferenceUnavailable, match="failed to start"):
        remote.restart(remote.generation)
    assert (remote.restarts, remote.failed_restarts) == (2, 2) and not remote.alive


def test_a_child_that_dies_without_traffic_is_replaced_by_the_watchdog(ensemble_odin: Path) -> None:
    rt = in_child(ensemble_odin, max_wait_ms=0)
    try:
        assert rt.remote is not None and rt.remote.alive
        old = rt.remote.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        # No request is sent: /readyz keeps traffic away from a dead child, so nothing else would restart it.
        deadline = time.monotonic() + 30
        while not (rt.remote.alive and rt.remote.pid != old):
            assert time.monotonic() < deadline, "the dead inference process was not replaced"
            time.sleep(0.1)
        assert rt.remote.restarts == 1 and rt.remote.failed_restarts == 0
        assert len(asyncio.run(rt.run(images(1, seed=3))).probs) == 1  # and it computes
    finally:
        rt.close()
    assert not rt.remote.alive  # closing stopped the watchdog first: the child stays stopped


def test_a_restarted_child_refuses_a_bundle_changed_on_disk(tiny_bundle: Path, ensemble_odin: Path, tmp_path: Path) -> None:
    # The child re-reads the bundle when it is restarted: another model, or the same weights
    # under another manifest (threshold, seed, version), must not be served under the name,
    # version and thresholds the service answers with.
    served = tmp_path / "served"
    shutil.copytree(tiny_bundle, served)
    remote = ProcessCompute(served, 1, 32, bundle_digest=load_bundle(tiny_bundle).manifest.digest())
    remote.start()
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    retuned = json.dumps({**manifest, "failure": {**manifest["failure"], "threshold": 0.5}})
    try:
        assert remote.alive
        for change in ("other bundle", "same weights, other threshold"):
            if change == "other bundle":  # a deploy overwrote the folder
                for name in ("manifest.json", "weights.safetensors"):
                    shutil.copy(ensemble_odin / name, served / name)
            else:
                shutil.copy(tiny_bundle / "weights.safetensors", served / "weights.safetensors")
                (served / "manifest.json").write_text(retuned)
            remote._retry_at = 0.0
            with pytest.raises(InferenceUnavailable, match="changed since this service started") as refused:
                remote.restart(remote.generation)
            assert "restart the service" in str(refused.value), change
            assert not remote.alive, change
        assert remote.failed_restarts == 2
        shutil.copy(tiny_bundle / "manifest.json", served / "manifest.json")  # the served bundle is back
        remote._retry_at = 0.0
        remote.restart(remote.generation)
        assert remote.alive and remote.failed_restarts == 0
    finally:
        remote.close()
