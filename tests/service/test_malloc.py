"""`vigil serve` fixes glibc's mmap threshold, so freed large blocks leave the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

#: In a fresh interpreter: free one 24 MiB block (glibc then raises its threshold to 24 MiB),
#: allocate twenty 8 MiB blocks each followed by a small one, free the big ones, and print
#: how many MiB stay resident. Decoded uploads are freed the same way, between the small
#: allocations of everything else the server does.
SCENARIO = """
import sys
from service.malloc import fix_mmap_threshold
def rss(): return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
if sys.argv[1] == "fixed": assert fix_mmap_threshold()
big = bytearray(24 * 2**20); del big
base, blocks, pins = rss(), [], []
for _ in range(20):
    blocks.append(bytearray(8 * 2**20)); pins.append(bytearray(1024))
del blocks
print(rss() - base)
"""


def _left_resident(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCENARIO, mode], cwd=REPO, capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_large_blocks_stay_resident_only_without_the_fix() -> None:
    if _left_resident("default") < 100:
        pytest.skip("this C library does not keep such blocks resident (not glibc)")
    assert _left_resident("fixed") < 16  # of the 160 MiB freed
