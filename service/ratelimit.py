"""Per-client token buckets, in memory: `rate` tokens per second, at most `burst` saved up.

An image costs one token (a batch of N, N tokens); without enough the caller learns how
long until it has them (the Retry-After of a 429). A cost above the burst is granted on a
full bucket and leaves it in debt, so a large batch waits for a full bucket, not for ever,
and a client's long-run rate stays `rate` images per second whatever its batch size. Buckets are kept in least-recently-used order and capped,
so a flood of distinct clients costs bounded memory (an evicted client starts afresh
with a full bucket, which only ever errs towards letting a request through).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    def __init__(self, rate: float, burst: int, max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst, self.max_clients = rate, float(burst), max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last refill)
        self._lock = threading.Lock()  # dependencies may run in the threadpool

    def take(self, client: str, cost: float = 1.0, prepaid: float = 0.0) -> float:
        """Take `cost` tokens, of which `prepaid` were taken earlier for the same request: 0.0
        when granted, else the seconds until a retry of the whole request would be granted.
        A refusal keeps what was prepaid (the body was read), so hammering costs a token a try."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            need = min(cost, self.burst)
            wait = 0.0
            if tokens + prepaid >= need:
                tokens -= cost - prepaid  # negative past the burst: the debt is paid back first
            else:
                wait = (need - tokens) / self.rate  # a retry's own first token comes out of it again
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)
