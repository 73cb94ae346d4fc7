"""The inference runtime: callers await rows of micro-batches computed by one torch thread,
in a child process of its own (the service's default) or on a thread of this process.

`await runtime.run(pixels)` never blocks the event loop: it enqueues the pixels for
the batcher (service/batcher.py, or service/pipelined.py for the child process) and
awaits its own rows. The model is prepared once at start (serving mode comes from the
bundle loader; BatchNorm folding and channels_last here) and warmed up where it will
compute, so no request pays for first-use costs. Overload is answered, not queued
without end: a full queue or a slow result is a 503.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import torch

from models.bundle import Bundle
from models.fusion import fold_batchnorm
from models.pipeline import Pipeline, PipelineOutput
from service.batcher import Full, Job, MicroBatcher, start_worker
from service.errors import ApiError
from service.inference_process import InferenceUnavailable, ProcessCompute
from service.pipelined import PipelinedBatcher
from service.settings import Settings

RETRY = {"Retry-After": "1"}


class InferenceRuntime:
    def __init__(
        self,
        bundle: Bundle,
        threads: int,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        chunk: int = 32,
        max_pending: int = 1024,
        timeout_s: float = 10.0,
        channels_last: bool = True,
        fold_bn: bool = True,
        process_model_dir: Path | None = None,
    ) -> None:
        self.pipeline = Pipeline(bundle)
        self.spec = bundle.manifest.input
        self.timeout_s = timeout_s
        self._threads = threads
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        #: With `process_model_dir`, a child process loads that bundle and computes
        #: (service/inference_process.py); this process's copy of the model then stays idle.
        self.remote: ProcessCompute | None = None
        if process_model_dir is not None:
            self.remote = ProcessCompute(
                process_model_dir, threads, chunk, channels_last=channels_last, fold_bn=fold_bn,
                bundle_digest=bundle.manifest.digest(),
            )  # fmt: skip
            self.batcher: MicroBatcher = PipelinedBatcher(self.remote, max_batch, max_wait_ms / 1000.0, max_pending)
        else:
            # Once, at load: BatchNorm folded into the convs (exact; fewer ops forward and in
            # ODIN's backward), and channels_last, measured faster for batched convolutions here.
            if fold_bn:
                fold_batchnorm(bundle.model)
            bundle.model.to(memory_format=self._memory_format)
            self.batcher = MicroBatcher(self._compute, max_batch, max_wait_ms / 1000.0, chunk, max_pending)
        self._warm = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.ready = False

    @classmethod
    def from_settings(cls, bundle: Bundle, s: Settings) -> InferenceRuntime:
        return cls(
            bundle,
            s.torch_threads,
            max_batch=s.batch_max_size,
            max_wait_ms=s.batch_max_wait_ms,
            chunk=s.inference_chunk_size,
            max_pending=s.inference_queue_size,
            timeout_s=s.inference_timeout_s,
            channels_last=s.channels_last,
            fold_bn=s.fold_batchnorm,
            process_model_dir=s.model_dir if s.inference_process else None,
        )

    def _compute(self, pixels: torch.Tensor) -> PipelineOutput:
        # Runs on the worker thread only; the Python values are made here, per batch, so the
        # event loop runs no tensor op per request (each would also hand the GIL back and forth).
        return self.pipeline.run(pixels.float().contiguous(memory_format=self._memory_format)).with_values()

    def prepare_compute_thread(self) -> None:
        """On the thread that will run torch: its thread count, then kernels for the common shapes."""
        # Thread count is set once, on the thread that runs torch (an A/B run chose 1 on 2 cores).
        torch.set_num_threads(self._threads)
        s = self.spec
        for n in {1, self.batcher.chunk}:  # the shapes most batches have: build kernels now
            self._compute(torch.zeros(n, s.channels, s.height, s.width))

    def _init_thread(self) -> None:
        if self.remote is None:  # else the child prepared its own thread before `start` returned
            self.prepare_compute_thread()
        self._warm.set()

    def warm_up(self) -> None:
        """Start the torch thread and wait until it has run the whole pipeline once.

        Call it on the event loop's thread: that thread gets one intra-op thread too.
        It only touches per-request rows (tiny tensors), yet with the default (one per
        core) a 50-element reduction there opened an OpenMP region whose barrier cost
        ~10 ms on 2 busy cores, against 3 us single-threaded (measured; see README).
        """
        torch.set_num_threads(1)
        if self.remote is not None and self.remote.pid is None:
            self.remote.start()  # raises if the bundle cannot be served there: refuse to start
        if self._thread is None:
            self._thread = start_worker(self.batcher, self._init_thread)
        self._warm.wait()
        self.ready = True

    async def run(self, pixels: torch.Tensor) -> PipelineOutput:
        """Pixels ``[B, C, H, W]`` in [0, 1] -> this caller's pipeline output (B rows)."""
        if self._closed or self._thread is None:
            raise ApiError(503, "not_serving", "the inference runtime is not running", RETRY)
        loop = asyncio.get_running_loop()
        job = Job(pixels, loop.create_future(), loop)
        try:
            self.batcher.submit(job)
        except Full as e:
            raise ApiError(503, "inference_backpressure", "too many requests are waiting for inference; retry shortly", RETRY) from e
        try:
            return await asyncio.wait_for(job.future, self.timeout_s)
        except TimeoutError as e:
            job.abandoned = True
            raise ApiError(503, "inference_timeout", f"inference took longer than {self.timeout_s:g} s; retry shortly", RETRY) from e
        except asyncio.CancelledError:
            job.abandoned = True  # the client left: do not compute for nobody
            raise
        except InferenceUnavailable as e:
            raise ApiError(503, "inference_unavailable", "the inference process stopped; it is restarted automatically: retry shortly", RETRY) from e
        except Exception as e:
            # An ApiError, so the route logs the request like any other refusal (a bare
            # exception would become an unlogged 500).
            raise ApiError(500, "inference_error", "inference failed for the batch this input was in; quote the request id") from e

    async def aclose(self) -> None:
        """Stop taking work, let the worker finish every queued job, and deliver the results."""
        self._closed = True
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._stop_and_join)
        await asyncio.sleep(0)  # let the last deliveries reach their callers

    def close(self) -> None:
        """Synchronous `aclose` for callers without an event loop."""
        self._closed = True
        if self._thread is not None:
            self._stop_and_join()

    def _stop_and_join(self) -> None:
        assert self._thread is not None
        self.batcher.stop()
        self._thread.join()
        if self.remote is not None:  # after the queue is drained: every job got its answer
            self.remote.close()
