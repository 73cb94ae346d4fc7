"""The micro-batching runtime: batched results equal one-by-one results, each caller gets
its own rows, overload is a 503, and shutdown completes every pending request.

Exact methods (a packed ensemble with ODIN, which differentiates through the batch)
are used for equality: a sampling method draws different noise for another batch
shape, so its batched and single results agree only in distribution.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from benchmarks.bundles import untrained_ensemble
from models.bundle import Bundle, load_bundle
from models.pipeline import Pipeline, PipelineOutput
from models.scorers.base import ScoreInput
from models.scorers.odin import ODIN
from service.errors import ApiError
from service.runtime import InferenceRuntime


@pytest.fixture(scope="module")
def ensemble_odin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_ensemble(tmp_path_factory.mktemp("bundles") / "ens", members=3)


def runtime(bundle: Bundle, **kw: float) -> InferenceRuntime:
    rt = InferenceRuntime(bundle, 1, **kw)  # type: ignore[arg-type]
    rt.warm_up()
    return rt


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def assert_same(a: PipelineOutput, b: PipelineOutput) -> None:
    assert a.values is not None  # the runtime made the Python values on the torch thread
    for va, vb in zip(a.row_values(), b.row_values(), strict=True):
        assert va.label == vb.label and va.prediction_set == vb.prediction_set
        assert va.probs == pytest.approx(vb.probs, rel=1e-4, abs=2e-4)
    for f in fields(PipelineOutput):
        if f.name == "values":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.shape == y.shape, f.name
        # ODIN's sign step can flip on a near-zero gradient under another batch's kernels.
        torch.testing.assert_close(x.float(), y.float(), rtol=1e-4, atol=2e-4, msg=f.name)


@pytest.mark.parametrize("chunk", [64, 5])
def test_batch_equals_one_by_one(ensemble_odin: Path, chunk: int) -> None:
    rt = runtime(load_bundle(ensemble_odin), chunk=chunk, max_wait_ms=0)
    x = images(12)

    async def go() -> tuple[PipelineOutput, list[PipelineOutput]]:
        whole = await rt.run(x)
        return whole, [await rt.run(x[i : i + 1]) for i in range(len(x))]

    try:
        whole, single = asyncio.run(go())
    finally:
        rt.close()
    assert whole.probs.shape == (12, 10) and whole.sample_probs.shape == (3, 12, 10)
    for i, one in enumerate(single):
        assert_same(whole.row(i), one)


def test_concurrent_callers_get_their_own_rows(ensemble_odin: Path) -> None:
    rt = runtime(load_bundle(ensemble_odin), max_wait_ms=50)
    x = images(20, seed=1)
    expected = rt.pipeline.run(x.contiguous(memory_format=torch.channels_last))

    async def go() -> list[PipelineOutput]:
        return await asyncio.gather(*(rt.run(x[i : i + 1]) for i in range(len(x))))

    try:
        got = asyncio.run(go())
    finally:
        rt.close()
    for i, out in enumerate(got):
        assert_same(out, expected.row(i))
    assert rt.batcher.inputs == 20 and rt.batcher.batches <= 5  # gathered, not 20 forwards


def test_shutdown_drains_pending_requests(ensemble_odin: Path) -> None:
    rt = runtime(load_bundle(ensemble_odin), max_wait_ms=20, max_batch=4)
    x = images(10, seed=2)

    async def go() -> list[PipelineOutput]:
        tasks = [asyncio.create_task(rt.run(x[i : i + 1])) for i in range(len(x))]
        await asyncio.sleep(0)  # every task has enqueued its job
        await rt.aclose()
        assert all(t.done() for t in tasks)
        with pytest.raises(ApiError) as refused:
            await rt.run(x[:1])
        assert refused.value.status == 503
        return [t.result() for t in tasks]

    done = asyncio.run(go())
    assert [o.probs.shape for o in done] == [(1, 10)] * 10


def test_full_queue_and_slow_inference_are_503(ensemble_odin: Path) -> None:
    rt = runtime(load_bundle(ensemble_odin), max_pending=1, timeout_s=0.2, max_wait_ms=0)
    compute = rt.batcher._compute
    rt.batcher._compute = lambda p: (time.sleep(0.5), compute(p))[1]  # type: ignore[method-assign]
    x = images(1)

    async def go() -> list[PipelineOutput | BaseException]:
        first = asyncio.create_task(rt.run(x))  # taken by the worker, which then sleeps
        await asyncio.sleep(0.1)
        second = asyncio.create_task(rt.run(x))  # fills the queue of one
        await asyncio.sleep(0)
        return await asyncio.gather(first, second, rt.run(x), return_exceptions=True)

    try:
        first, second, third = asyncio.run(go())
    finally:
        rt.close()
    assert isinstance(third, ApiError) and (third.status, third.code) == (503, "inference_backpressure")
    assert third.headers["Retry-After"] == "1"
    for timed_out in (first, second):
        assert isinstance(timed_out, ApiError) and (timed_out.status, timed_out.code) == (503, "inference_timeout")


def test_served_runtime_equals_the_unoptimised_reference(ensemble_odin: Path) -> None:
    """Folded BatchNorm, channels_last and ODIN's gradient taken from the pipeline's own
    forward give what the stored bundle gives with ODIN running its own forward."""
    rt = runtime(load_bundle(ensemble_odin), max_wait_ms=0)
    x = images(9, seed=3)
    try:
        out = asyncio.run(rt.run(x))
    finally:
        rt.close()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in rt.pipeline.bundle.model.modules())
    ref = load_bundle(ensemble_odin)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in ref.model.modules())
    xn = Pipeline(ref).normalise(x)
    with torch.no_grad():
        feats = ref.model.features(xn)
        logits = ref.model.head_samples(feats)
    inp = ScoreInput(ref.model, xn, logits, feats, ref.manifest.temperature)  # no graph: ODIN's own forward
    odin = ref.ood_scorer
    assert isinstance(odin, ODIN) and odin.eps > 0
    expected = odin.score(inp)
    unperturbed = ODIN(odin.temperature, 0.0).score(inp)
    gap = (expected - unperturbed).abs().min()
    assert gap > 0  # the step matters, so matching `expected` checks it was taken
    torch.testing.assert_close(out.ood_score, expected, rtol=0, atol=float(gap) / 10)
    torch.testing.assert_close(out.probs, torch.softmax(logits / ref.manifest.temperature, -1).mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("eps", [0.0014, 0.0])
def test_pipeline_runs_one_forward_per_batch_plus_odins_step(ensemble_odin: Path, eps: float) -> None:
    """With a step, ODIN differentiates the pipeline's recorded forward (2 forwards: that one
    and x'); without one, nothing is recorded and the pipeline's own logits serve (1 forward)."""
    bundle = load_bundle(ensemble_odin)
    odin = bundle.ood_scorer
    assert isinstance(odin, ODIN)
    pipeline = Pipeline(bundle)  # built first: whether it records follows the scorer as it is now
    odin.eps = eps
    calls: list[tuple[bool, bool]] = []  # (grad recorded, inference mode) per forward
    features = bundle.model.features

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return features(x)

    bundle.model.features = counted  # type: ignore[method-assign]
    out = pipeline.run(images(4))
    assert calls == ([(True, False), (False, False)] if eps else [(False, True)])
    with torch.no_grad():
        logits = bundle.model.head_samples(features(Pipeline(bundle).normalise(images(4))))
    unperturbed = ODIN(odin.temperature, 0.0).score(ScoreInput(bundle.model, torch.zeros(1), logits, logits, 1.0))
    if eps:
        assert torch.all(out.ood_score < unperturbed)  # the step raised every max softmax
    else:
        torch.testing.assert_close(out.ood_score, unperturbed)
