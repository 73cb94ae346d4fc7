"""Freed large blocks go back to the operating system: glibc's mmap threshold, fixed.

glibc serves a request over its mmap threshold (128 KiB) with its own mapping, unmapped
when freed. But each such free raises the threshold to the freed size (up to 32 MiB), and
from then on blocks of that size come from the per-thread heaps ("arenas"), where a freed
block stays resident until everything above it is freed too. Uploads are decoded in a
pool of threads, so an upload that decodes big (up to 230 MB for an RGBA PNG at the pixel
limit) left that much behind in each thread's arena. Measured 2026-11-30 with 32 uploads of
24-25-megapixel PNGs: decoded on 32 threads of a bare process, the peak RSS rose by 1.0 GB,
and by 0.4 GB with the threshold fixed (the decode semaphore in service/decode.py bounds
what is live to two decodes); sent at once to `vigil serve`, the server's peak rose by
2.7 GB, and by 0.46 GB with it.
Setting the threshold explicitly turns the adjustment off (mallopt(3)). It costs torch
dearly (a mapping per large tensor), so `vigil serve` sets it only when inference runs in
its own process.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("vigil")

#: mallopt's parameter number for the threshold (malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's own initial threshold, kept for good.
THRESHOLD_BYTES = 128 * 1024


def fix_mmap_threshold(size: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `size` bytes for this process; False where the allocator
    in this process is not glibc's (musl, macOS; mallopt's numbers are glibc's)."""
    libc = ctypes.CDLL(None)  # the symbols this process already has: no library search
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, size))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", size, ok)
    return ok
