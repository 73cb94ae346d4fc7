"""Freed large blocks go back to the operating system: glibc's mmap threshold, fixed.

glibc serves a request over its mmap threshold (128 KiB) with its own mapping, unmapped
when freed. But each such free raises the threshold to the freed size (up to 32 MiB), and
from then on blocks of that size come from the per-thread heaps ("arenas"), where a freed
block stays resident until everything above it is freed too. Uploads are decoded in a
pool of threads, so an upload that decodes big (up to 230 MB for an RGBA PNG at the pixel
limit) left that much behind in each thread's arena: 32 concurrent 25-megapixel PNGs raised
the server's peak RSS by 1.0 GB, where the decode semaphore (service/decode.py) bounds what
is live to two decodes, +0.4 GB with the threshold fixed (measured in-process, 2026-11-30).
Setting the threshold explicitly turns the adjustment off (mallopt(3)). It costs torch
dearly (a mapping per large tensor), so `vigil serve` sets it only when inference runs in
its own process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("vigil")

#: mallopt's parameter number for the threshold (malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's own initial threshold, kept for good.
THRESHOLD_BYTES = 128 * 1024


def fix_mmap_threshold(size: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `size` bytes for this process; False where the C library
    is not glibc (musl, macOS), which has no such adjustment to turn off."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, size))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", size, ok)
    return ok
