"""The pipeline in a child process: torch computes without sharing the event loop's GIL.

In one process, the torch thread takes the GIL back after every op (about 140 per
chunk of ensemble + ODIN), and under load the event loop often holds it: traced in the
service, the torch thread spent ~37 % of its compute time off the CPU, waiting. A child
process has a GIL of its own, so it computes at its in-process speed while the parent
parses HTTP on the other core (measured: +20 to +45 % req/s at concurrency 64).

The parent keeps its dispatcher thread (service/batcher.py); only the computation moves.
Nothing is pickled in either direction: the parent sends raw float32 pixels behind a
shape header, the child answers with a JSON header naming each output tensor's dtype
and shape, followed by the tensors' raw bytes. The child loads the bundle from disk
itself (safetensors, as the parent does), tells the parent which bundle it loaded (the
manifest's digest, which covers the weights' checksum: a bundle changed on disk since the
service started is refused, not served under the old name), and ignores SIGINT/SIGTERM: it stops when the
parent sends the stop message or its pipe closes, so a shutdown can finish the queue.
A child that dies is restarted and the batch retried once (see `ProcessCompute`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import signal
import struct
import threading
import time
from dataclasses import fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from models.pipeline import PipelineOutput

log = logging.getLogger("vigil.inference")
#: Longest wait between tries to start an inference process after failed ones (2, 4, ... s).
MAX_RETRY_S = 30.0
#: Failed starts in a row after which /healthz fails, so the orchestrator replaces the pod.
UNRECOVERABLE_AFTER = 3

_SHAPE = struct.Struct("<4I")  # n, c, h, w of the float32 pixels that follow
_HEADER = struct.Struct("<I")  # length of the JSON header that follows
_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float64, torch.bool, torch.int64, torch.int32, torch.uint8)}
#: PipelineOutput's tensor fields, in order (everything but the per-row Python values).
TENSOR_FIELDS = tuple(f.name for f in fields(PipelineOutput) if f.name != "values")


class InferenceUnavailable(RuntimeError):
    """The child process died, could not start, or did not answer in time.

    `generation`: the child generation that failed, where known, so that whoever restarts
    replaces that one and never a newer child another thread has just started.
    """

    def __init__(self, message: str, generation: int | None = None) -> None:
        super().__init__(message)
        self.generation = generation


class InferenceFailed(RuntimeError):
    """The child's computation raised; the message is the child's exception."""


def encode_pixels(x: torch.Tensor) -> bytes:
    n, c, h, w = x.shape
    return _SHAPE.pack(n, c, h, w) + x.detach().to(torch.float32).contiguous().numpy().tobytes()


def decode_pixels(msg: bytes) -> torch.Tensor:
    n, c, h, w = _SHAPE.unpack_from(msg)
    if len(msg) != _SHAPE.size + 4 * n * c * h * w:
        raise ValueError(f"pixel message of {len(msg)} bytes does not hold {n}x{c}x{h}x{w} float32")
    return torch.frombuffer(bytearray(msg[_SHAPE.size :]), dtype=torch.float32).view(n, c, h, w)


def encode_output(out: PipelineOutput) -> bytes:
    tensors = [getattr(out, name).detach().contiguous() for name in TENSOR_FIELDS]
    meta = [[name, str(t.dtype).removeprefix("torch."), list(t.shape)] for name, t in zip(TENSOR_FIELDS, tensors, strict=True)]
    head = json.dumps({"ok": True, "tensors": meta}).encode()
    head += b" " * (-(_HEADER.size + len(head)) % 8)  # tensors start 8-byte aligned for frombuffer
    return b"".join([_HEADER.pack(len(head)), head, *(t.numpy().tobytes() for t in tensors)])


def encode_error(message: str) -> bytes:
    head = json.dumps({"ok": False, "error": message[:2000]}).encode()
    return _HEADER.pack(len(head)) + head


def decode_output(msg: bytes) -> PipelineOutput:
    """The child's answer as a PipelineOutput (tensors are views of one buffer, no copy)."""
    (size,) = _HEADER.unpack_from(msg)
    head = json.loads(msg[_HEADER.size : _HEADER.size + size])
    if not head["ok"]:
        raise InferenceFailed(head["error"])
    buf, offset = bytearray(msg), _HEADER.size + size
    parts: dict[str, torch.Tensor] = {}
    for name, dtype_name, shape in head["tensors"]:
        dtype = _DTYPES[dtype_name]  # a KeyError here means a foreign message: let it fail loudly
        count = 1
        for s in shape:
            count *= s
        parts[name] = torch.frombuffer(buf, dtype=dtype, count=count, offset=offset).view(shape) if count else torch.empty(shape, dtype=dtype)
        offset += count * parts[name].element_size()
    if offset != len(msg) or set(parts) != set(TENSOR_FIELDS):
        raise InferenceFailed("malformed answer from the inference process")
    return PipelineOutput(**parts)


def _child_main(requests: Connection, answers: Connection, model_dir: str, threads: int, chunk: int, channels_last: bool, fold_bn: bool) -> None:
    # The parent decides when this process ends (stop message or closed pipe): a Ctrl-C
    # or SIGTERM to the process group must not kill it while the parent drains its queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from models.bundle import load_bundle
    from service.runtime import InferenceRuntime

    try:
        # The in-thread runtime's preparation and chunked compute, used here on this process's main thread.
        runtime = InferenceRuntime(load_bundle(Path(model_dir)), threads, chunk=chunk, channels_last=channels_last, fold_bn=fold_bn)
        runtime.prepare_compute_thread()
        compute = runtime.batcher.compute
    except Exception as e:  # noqa: BLE001 - the parent reports it and refuses to start
        answers.send_bytes(encode_error(f"{type(e).__name__}: {e}"))
        return
    answers.send_bytes(encode_ready(runtime.pipeline.bundle.manifest.digest()))
    while True:
        try:
            msg = requests.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if not msg:
            return  # stop
        try:
            answer = encode_output(compute(decode_pixels(msg)))
        except Exception as e:  # noqa: BLE001 - one bad batch is answered, the process lives on
            answer = encode_error(f"{type(e).__name__}: {e}")
        answers.send_bytes(answer)


class ProcessCompute:
    """The child process, seen from the parent: `send` a batch, `recv` its answer, in order.

    One thread sends and one receives (service/pipelined.py), so the next batch can wait
    in the pipe while the child computes the current one. Each start of the child is a
    new *generation*: an answer is only taken from the generation its batch was sent to,
    and a dead child is replaced once (`restart(generation)`), however many batches it
    took down. Those batches fail with `InferenceUnavailable` (503, retry); none is
    silently re-run, so no answer can come from a batch the caller already gave up on.
    """

    def __init__(
        self,
        model_dir: Path,
        threads: int,
        chunk: int,
        *,
        channels_last: bool = True,
        fold_bn: bool = True,
        start_timeout_s: float = 300.0,
        answer_timeout_s: float = 120.0,
        bundle_digest: str | None = None,
    ) -> None:
        self._args = (str(model_dir), threads, chunk, channels_last, fold_bn)
        #: `Manifest.digest()` of the bundle the parent serves (None: not checked). A restarted
        #: child re-reads the bundle from disk; another manifest or other weights are refused.
        self.bundle_digest = bundle_digest
        self.start_timeout_s, self.answer_timeout_s = start_timeout_s, answer_timeout_s
        self._ctx = mp.get_context("spawn")  # never fork a process that already runs threads
        self._lock = threading.Lock()  # guards the fields below and the request pipe
        self._proc: Any = None
        self._requests: Connection | None = None
        self._answers: Connection | None = None
        self.generation = 0
        self.restarts = 0
        #: Restarts that failed in a row (reset by one that works): the service cannot compute.
        self.failed_restarts = 0
        self._retry_at = 0.0  # monotonic time before which no restart is tried

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.is_alive()

    def restart_due(self) -> bool:
        """False while backing off after a failed start."""
        return time.monotonic() >= self._retry_at

    def start(self) -> None:
        """Spawn the child and wait until it has loaded the bundle and run a warm-up batch."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        req_read, req_write = self._ctx.Pipe(duplex=False)
        ans_read, ans_write = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child_main, args=(req_read, ans_write, *self._args), name="vigil-inference", daemon=True)
        proc.start()
        req_read.close()  # the child holds these ends; ours closed, a dead child reads as EOF
        ans_write.close()
        self._proc, self._requests, self._answers = proc, req_write, ans_read
        self.generation += 1
        if not ans_read.poll(self.start_timeout_s):
            self._kill_locked()
            raise InferenceUnavailable(f"the inference process did not start within {self.start_timeout_s:g} s")
        try:
            loaded = decode_ready(ans_read.recv_bytes())
        except (EOFError, OSError, InferenceFailed) as e:
            self._kill_locked()
            raise InferenceUnavailable(f"the inference process failed to start: {e}") from e
        if self.bundle_digest is not None and loaded != self.bundle_digest:
            self._kill_locked()
            raise InferenceUnavailable(
                f"the inference process failed to start: the bundle at {self._args[0]} changed since this service "
                f"started (manifest or weights; digest {loaded[:12]}... against {self.bundle_digest[:12]}...); "
                "restart the service to serve the new bundle"
            )

    def send(self, pixels: torch.Tensor) -> int:
        """Queue one batch for the child; returns the generation whose answer to wait for."""
        msg = encode_pixels(pixels)
        with self._lock:
            if self._requests is None:
                raise InferenceUnavailable("the inference process is not running")
            try:
                self._requests.send_bytes(msg)  # blocks while the pipe is full: back-pressure
            except (OSError, ValueError) as e:
                raise InferenceUnavailable(f"the inference process is gone ({type(e).__name__})", self.generation) from e
            return self.generation

    def recv(self, generation: int) -> PipelineOutput:
        """The next answer, which belongs to the oldest batch sent to `generation`."""
        with self._lock:
            answers = self._answers if generation == self.generation else None
        if answers is None:
            raise InferenceUnavailable("the inference process this batch was sent to has stopped")
        try:
            if not answers.poll(self.answer_timeout_s):
                raise InferenceUnavailable(f"no answer from the inference process within {self.answer_timeout_s:g} s")
            msg = answers.recv_bytes()
        except (EOFError, OSError, ValueError) as e:
            raise InferenceUnavailable(f"the inference process is gone ({type(e).__name__})") from e
        # The per-row Python values are made here, in the parent, once per batch.
        return decode_output(msg).with_values()

    def __call__(self, pixels: torch.Tensor) -> PipelineOutput:
        """One batch, start to end (for callers that do not overlap batches)."""
        return self.recv(self.send(pixels))

    def restart(self, generation: int) -> None:
        """Replace the child of `generation`, unless that was done already."""
        proc = self._proc
        if generation != self.generation:
            return
        if proc is not None and proc.is_alive():
            proc.kill()  # first, without the lock: a send blocked on a hung child now fails
        with self._lock:
            if generation != self.generation:
                return
            wait = self._retry_at - time.monotonic()
            if wait > 0:  # the last start failed: each try costs a torch import, so back off
                raise InferenceUnavailable(f"the inference process could not be started; next try in {wait:.0f} s")
            if self._proc is not None:
                log.error("inference process %s (generation %d) lost; starting a new one", self.pid, generation)
            self._kill_locked()
            self.restarts += 1
            try:
                self._start_locked()
            except InferenceUnavailable:
                self.failed_restarts += 1
                self._retry_at = time.monotonic() + min(2.0**self.failed_restarts, MAX_RETRY_S)
                raise
            self.failed_restarts = 0

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the child to stop after its current batch; kill it if it does not."""
        with self._lock:
            if self._requests is not None:
                try:
                    self._requests.send_bytes(b"")
                except (OSError, ValueError):
                    pass
            if self._proc is not None:
                self._proc.join(timeout_s)
            self._kill_locked()

    def _kill_locked(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5)
        for conn in (self._requests, self._answers):
            if conn is not None:
                conn.close()
        self._proc, self._requests, self._answers = None, None, None


def encode_ready(bundle_digest: str) -> bytes:
    head = json.dumps({"bundle_digest": bundle_digest}).encode()
    return _HEADER.pack(len(head)) + head


def decode_ready(msg: bytes) -> str:
    """The child's first message: when ready, the digest of the bundle it loaded; else its start-up error."""
    (size,) = _HEADER.unpack_from(msg)
    head = json.loads(msg[_HEADER.size : _HEADER.size + size])
    if head.get("ok") is False:
        raise InferenceFailed(head["error"])
    return str(head["bundle_digest"])
