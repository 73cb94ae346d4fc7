"""The inference runtime: torch runs in one dedicated worker thread, never on the event loop.

The model is loaded, put in serving mode and warmed up once at start.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import torch

from models.bundle import Bundle
from models.pipeline import Pipeline, PipelineOutput


class InferenceRuntime:
    def __init__(self, bundle: Bundle, threads: int) -> None:
        self.pipeline = Pipeline(bundle)
        self.spec = bundle.manifest.input
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-torch", initializer=self._init_thread)
        self.ready = False

    def _init_thread(self) -> None:
        torch.set_num_threads(self._threads)

    def warm_up(self) -> None:
        """Run one batch through the whole pipeline so the first request is not slow."""
        zeros = torch.zeros(2, self.spec.channels, self.spec.height, self.spec.width)
        self._pool.submit(self.pipeline.run, zeros).result()
        self.ready = True

    async def run(self, pixels: torch.Tensor) -> PipelineOutput:
        """Pixels ``[B, C, H, W]`` in [0, 1] -> pipeline output, computed off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.pipeline.run, pixels)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
