"""How a command's process hands freed memory back to the system.

glibc's malloc serves a block of at least its mmap threshold with a mapping of its own, unmapped
when freed; a smaller block comes from a heap, which shrinks only from its top. The threshold
starts at 128 KiB and rises to the size of the largest mapped block freed so far (up to 32 MiB).
After the first 16 MB read batch of a stream is freed, the read batches, image copies and float32
inputs of a streamed job all come from the heaps, and the holes they leave stay resident: at
128x128x3, `generate` on 6,400 images still held about 100 MB after encoding, which decoding
reused only in part. A fixed threshold stops the rise (``benchmarks/generator_throughput.py``).

The commands that stream DATA (``generate``, ``encode``, ``grid``) fix it for their process; the
library leaves its caller's allocator alone. Elsewhere than glibc this does nothing.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import ctypes
import sys

# Blocks from this size up are mapped and unmapped on their own: 1 MiB measured lower peaks at
# 128x128x3 than 4 MiB, and the decoder's calls there are about 2 MB each.
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process.

    Returns
    -------
    bool
        True where glibc took the setting; False on another C library or system.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    # glibc's own symbol: musl's mallopt exists and does nothing.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
