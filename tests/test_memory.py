"""archer/memory.py: `release_free_memory` hands free heap pages between live blocks back to
the kernel (glibc), which is what a step's freed tensors leave behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archer import memory

ROOT = Path(__file__).resolve().parents[1]

# A heap with 1 MiB holes: 256 blocks of 1 MiB from the heap (the mmap threshold is fixed at
# 32 MiB and automatic trimming is off, so nothing is mapped or trimmed behind our back), every
# page written, then every other block freed. The last block stays, so the heap cannot shrink
# from its top: only a trim inside the heap can give the holes back.
FRAGMENT = """
import ctypes, json, os
from archer.memory import release_free_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
size = 1 << 20
blocks = [libc.malloc(size) for _ in range(256)]
for b in blocks:
    ctypes.memset(b, 1, size)
for b in blocks[::2]:
    libc.free(b)
before = rss()
released = release_free_memory()
after = rss()
print(json.dumps({"before": before, "after": after, "released": released}))
"""


@pytest.mark.skipif(not memory.trims(), reason="malloc_trim is glibc's")
def test_release_free_memory_returns_the_holes_between_live_blocks():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
           "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
    out = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["released"] is True
    # 128 freed blocks of 1 MiB: all but a page or two at each hole's edges go back.
    assert got["before"] - got["after"] > 120 * (1 << 20), got

