"""Micro-batching for a computation in another process: the next batch waits in the pipe.

With one batch at a time, the child process sat idle while the parent took its answer
apart, handed the rows back, gathered the next batch and sent it: measured ~20 % of the
child's time at concurrency 64, since every one of those steps waits for the GIL beside
the event loop. Here one thread gathers and sends (the `MicroBatcher` loop) and another
receives and delivers, with at most `in_flight` batches sent and not yet answered, so
the child finds its next batch ready when it finishes one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from service.batcher import Job, MicroBatcher, fail, stack
from service.inference_process import InferenceUnavailable, ProcessCompute

log = logging.getLogger("vigil.batcher")
#: Seconds between the watchdog's looks at the inference process.
WATCH_S = 1.0


class PipelinedBatcher(MicroBatcher):
    def __init__(self, remote: ProcessCompute, max_batch: int, max_wait_s: float, max_pending: int, in_flight: int = 2) -> None:
        # The child chunks each batch itself: whole batches go out.
        super().__init__(remote, max_batch, max_wait_s, max_batch, max_pending)
        self.remote = remote
        self._slots = threading.Semaphore(in_flight)
        self._sent: queue.Queue[tuple[list[Job], int, float] | None] = queue.Queue()
        self._last_answer = 0.0
        self._watching = threading.Event()  # set: the watchdog stops

    def serve(self) -> None:
        """Gather and send until `stop`; then wait until every sent batch is answered."""
        receiver = threading.Thread(target=self._receive_loop, name="vigil-receive", daemon=True)
        receiver.start()
        watchdog = threading.Thread(target=self._watch, name="vigil-watchdog", daemon=True)
        watchdog.start()
        try:
            stopping = False
            while not stopping:
                # A free slot first, then gather: a batch keeps growing while both slots are busy.
                self._slots.acquire()
                jobs, stopping = self._collect()
                live = [j for j in jobs if not j.abandoned]
                if live:
                    self._send(live)
                else:
                    self._slots.release()
        finally:
            self._watching.set()  # before the runtime closes the child: no restart after that
            watchdog.join()
            self._sent.put(None)
            receiver.join()

    def _watch(self) -> None:
        """Replace a child that died while no batch was in flight. Without traffic no send or
        receive fails, and /readyz keeps traffic away from a pod whose child is dead: only
        this brings it back (and counts failed starts, after which /healthz fails)."""
        while not self._watching.wait(WATCH_S):
            if not self.remote.alive and self.remote.restart_due():
                self._restart(self.remote.generation)

    def _send(self, jobs: list[Job]) -> None:
        try:
            generation = self.remote.send(stack(jobs))
        except Exception as e:  # noqa: BLE001 - every caller of the batch hears of it; the loop lives on
            self._slots.release()
            log.error("could not send a batch of %d jobs to the inference process: %s", len(jobs), e)
            if isinstance(e, InferenceUnavailable):
                # The generation the batch was sent to: if the receiver already replaced it,
                # restart() sees a stale generation and leaves the new child alone.
                self._restart(self.remote.generation if e.generation is None else e.generation)  # before the callers hear: see _receive_loop
            fail(jobs, e)
            return
        self._sent.put((jobs, generation, time.perf_counter()))

    def _receive_loop(self) -> None:
        while (item := self._sent.get()) is not None:
            jobs, generation, sent_at = item
            try:
                out = self.remote.recv(generation)
            except Exception as e:  # noqa: BLE001 - delivered to the batch's callers
                log.error("inference failed for a batch of %d jobs: %s", len(jobs), e)
                if isinstance(e, InferenceUnavailable):
                    # Replace the child first, then answer 503: a caller that retries at
                    # once then reaches the new child, instead of racing the restart to
                    # the old, broken pipe (and getting a second 503).
                    self._restart(generation)
                fail(jobs, e)
                continue
            finally:
                self._slots.release()
            # The child started this batch when it was sent and the previous one was done.
            now = time.perf_counter()
            self.busy_s += now - max(sent_at, self._last_answer)
            self._last_answer = now
            self.deliver(jobs, out)

    def _restart(self, generation: int) -> None:
        try:
            self.remote.restart(generation)
        except InferenceUnavailable as e:  # the next batch tries again (backed off); meanwhile callers get 503s
            log.error("the inference process could not be restarted: %s", e)
        except Exception:
            log.exception("the inference process could not be restarted")
