"""Handing the memory a streamed encoding freed back to the system.

glibc's malloc serves a block of at least its mmap threshold with a mapping of its own, unmapped
when freed; a smaller block comes from a heap, which shrinks only from its top. The threshold
rises to the size of the largest mapped block freed so far (up to 32 MiB), so after the first
16 MB read batch of DATA is freed, the image copies and float32 inputs of the encoding come from
the heaps, and the holes they leave stay resident: at 128x128x3, `generate` on 6,400 images still
held about 100 MB after encoding, which decoding reused only in part. ``malloc_trim`` returns the
free pages of every heap once encoding is done. A fixed threshold (``mallopt``) would have kept
the heaps small too, but it maps and unmaps every decoder call's buffers: measured, 30 times the
page faults and half as much CPU time again (``benchmarks/generator_throughput.py``).

Elsewhere than glibc this does nothing.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import ctypes
import sys


def release_free_memory() -> bool:
    """Return the free pages of glibc's heaps to the system (``malloc_trim(0)``).

    Returns
    -------
    bool
        True where glibc released memory; False where it had none to release, or on another C
        library or system.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)  # glibc's own: musl has none
    return bool(trim(0)) if trim is not None else False
