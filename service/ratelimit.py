"""Per-client token buckets, in memory: `rate` tokens per second, at most `burst` saved up.

An image costs one token (a batch of N, N tokens); without enough the caller learns how
long until it has them (the Retry-After of a 429). A cost above the burst is granted on a
full bucket and leaves it in debt, so a large batch waits for a full bucket, not for ever,
and a client's long-run rate stays `rate` images per second whatever its batch size. Buckets are kept in least-recently-used order and capped,
so a flood of distinct clients costs bounded memory. An evicted client starts afresh with a
full bucket, so eviction passes over buckets still in debt: forgetting one would hand a fresh
burst to exactly the client that spent past its own.

A client without a key is bucketed by its network, not its address (`network_of`): one IPv6
subscriber is handed a /64, 2**64 addresses, and one bucket per address would give it as many
fresh bursts.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: The IPv6 prefix one subscriber is handed (RFC 6177's /64 at the least; a /56 or /48 is common
#: too, but a /64 is what one LAN holds, so a shorter prefix would throttle neighbours together).
IPV6_CLIENT_PREFIX = 64


#: IPv6 prefixes whose last 32 bits are an IPv4 client's address (NAT64's well-known prefix,
#: RFC 6052; SIIT's IPv4-translated addresses, RFC 2765): one bucket per IPv4 client behind them.
EMBEDDED_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"))


def network_of(host: str) -> str:
    """The address a client's bucket is kept for: IPv6 by its /64; an IPv6 address that carries
    an IPv4 client's (IPv4-mapped, NAT64, SIIT, 6to4, Teredo) as that IPv4 address; a link-local
    one whole, with its interface (a link's /64 is shared by every host on it and the next link
    reuses it); IPv4, or a host that is no address (a test client's name), as it is."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if not isinstance(ip, ipaddress.IPv6Address):
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if any(ip in net for net in EMBEDDED_IPV4):
        return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        return str(ip.sixtofour)
    if ip.teredo is not None:
        return str(ip.teredo[1])  # (server, client): the client's public IPv4 address
    if ip.is_link_local:
        return host
    return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))


#: Least recently used buckets looked at for one that owes nothing, per eviction: the lock is
#: held, so the search is bounded; if all of them owe, the oldest goes anyway.
EVICT_SCAN = 32


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
                self._evict(now, keep=client)
            return wait

    def _evict(self, now: float, keep: str) -> None:
        """Drop the least recently used bucket that owes nothing by now (not `keep`'s, just used)."""
        for other, (tokens, last) in itertools.islice(self._buckets.items(), EVICT_SCAN):
            if other != keep and tokens + (now - last) * self.rate >= 0:
                del self._buckets[other]
                return
        self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
