"""The pipelined batcher replaces a lost child before its callers hear the 503, and only that child.

A fake remote stands in for the child process, so the order of events is exact: the
real-process tests (test_inference_process.py) pass under either order by timing alone.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from service import pipelined
from service.batcher import Job
from service.inference_process import InferenceUnavailable


class FakeRemote:
    """Every batch is lost: `send` or `recv` raises, as with a dead child."""

    def __init__(self, fail_on: str, generation: int = 0, sent_to: int = 0) -> None:
        self.fail_on = fail_on
        self.generation = generation  # the current child
        self.sent_to = sent_to  # the child the batch went to (older when another thread restarted)
        self.events: list[str] = []
        self.restarted: list[int] = []

    def send(self, pixels: torch.Tensor) -> int:
        if self.fail_on == "send":
            raise InferenceUnavailable("gone", self.sent_to)
        return self.generation

    def recv(self, generation: int) -> None:
        raise InferenceUnavailable("gone")

    def restart(self, generation: int) -> None:
        self.events.append("restart")
        self.restarted.append(generation)


async def _one_lost_batch(remote: FakeRemote, monkeypatch: pytest.MonkeyPatch) -> BaseException | None:
    real_fail = pipelined.fail

    def recording_fail(jobs: list[Job], error: Exception) -> None:
        remote.events.append("fail")
        real_fail(jobs, error)

    monkeypatch.setattr(pipelined, "fail", recording_fail)
    batcher = pipelined.PipelinedBatcher(remote, max_batch=4, max_wait_s=0.0, max_pending=8)  # type: ignore[arg-type]
    worker = threading.Thread(target=batcher.serve, daemon=True)
    worker.start()
    loop = asyncio.get_running_loop()
    job = Job(torch.zeros(1, 1, 28, 28), loop.create_future(), loop)
    batcher.submit(job)
    try:
        await asyncio.wait_for(job.future, 5)
    except InferenceUnavailable as e:
        error: BaseException | None = e
    else:
        error = None
    batcher.stop()
    await asyncio.to_thread(worker.join, 5)
    return error


@pytest.mark.parametrize("fail_on", ["send", "recv"])
def test_the_child_is_replaced_before_the_callers_hear(fail_on: str, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = FakeRemote(fail_on)
    error = asyncio.run(_one_lost_batch(remote, monkeypatch))
    assert isinstance(error, InferenceUnavailable)
    # Restart first: a caller retrying on its 503 then finds the new child, not the broken pipe.
    assert remote.events == ["restart", "fail"]


def test_a_failed_send_restarts_the_child_it_went_to_not_a_newer_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # The receiver thread already replaced child 0 by child 1 when the send to 0 failed:
    # the sender must name generation 0 (restart() then ignores it), never kill child 1.
    remote = FakeRemote("send", generation=1, sent_to=0)
    asyncio.run(_one_lost_batch(remote, monkeypatch))
    assert remote.restarted == [0]
