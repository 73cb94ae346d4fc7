"""The ceiling: in-process throughput of the full uncertainty pipeline, no HTTP, no queue.

Measured on the service's own compute path (`InferenceRuntime`'s model preparation and
the batcher's chunked compute) in the calling thread with the service's torch thread
count, so "service / ceiling" isolates what HTTP, decoding, queueing and logging cost.
Three variants show what the runtime's choices buy: one unchunked forward per batch,
the default memory format instead of channels_last, and BatchNorm kept (not folded).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from models.bundle import load_bundle
from service.runtime import InferenceRuntime

BATCHES = (1, 8, 64, 256)


def images_per_s(compute: object, batch: int, seconds: float) -> float:
    """Mean throughput of repeated `compute(x)` calls over at least `seconds` (after one warm call)."""
    assert callable(compute)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
    compute(x)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 3:
        compute(x)
        n += 1
    return batch * n / elapsed


def median_images_per_s(compute: object, batch: int, seconds: float, repeats: int) -> float:
    """The median of `repeats` measurements: one 1.5 s sample of the same point varied by
    up to a third between runs on these shared machines, and a ratio inherits that noise."""
    return statistics.median(images_per_s(compute, batch, seconds) for _ in range(repeats))


def ceiling(model_dir: Path, threads: int, chunk: int, seconds: float, variants: bool, repeats: int = 3) -> dict[str, dict[int, float]]:
    """images/s by batch size: `service_path`, and when `variants`, `unchunked`, `contiguous`, `batchnorm_kept`."""
    torch.set_num_threads(threads)
    out: dict[str, dict[int, float]] = {}
    runtimes = {"service_path": InferenceRuntime(load_bundle(model_dir), threads, chunk=chunk)}
    if variants:
        runtimes["unchunked"] = InferenceRuntime(load_bundle(model_dir), threads, chunk=max(BATCHES))
        runtimes["contiguous"] = InferenceRuntime(load_bundle(model_dir), threads, chunk=chunk, channels_last=False)
        runtimes["batchnorm_kept"] = InferenceRuntime(load_bundle(model_dir), threads, chunk=chunk, fold_bn=False)
    for name, rt in runtimes.items():
        out[name] = {b: round(median_images_per_s(rt.batcher.compute, b, seconds, repeats), 1) for b in BATCHES}
    return out
