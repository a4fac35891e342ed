"""The kernels' thread count, set without importing numba.

numba's thread count belongs to the calling thread (``numba.set_num_threads`` is thread-local).
`set_num_threads` applies it at once when numba is already loaded; otherwise it keeps it for the
calling thread, and a kernel applies it when it next takes its numba path in that thread. So a job
whose classes all take the numpy paths never imports numba (about 0.6 s of start-up with its
compiled kernels), and one that does runs them with the count it asked for. The numpy paths that
split their work over Python threads (`kneighbors` for mid-size classes) read the same count with
`current`.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["apply_pending", "current", "set_num_threads"]

_pending = threading.local()


def set_num_threads(n_threads: int | None) -> None:
    """Threads for the numba kernels called from this thread, at most numba's pool size.

    Parameters
    ----------
    n_threads : int or None
        A positive count, capped at ``numba.config.NUMBA_NUM_THREADS``; None leaves the count as
        it is (all of numba's threads unless set before).
    """
    if n_threads is None:
        return
    if "numba" in sys.modules:
        _pending.n_threads = None
        _apply(n_threads)
    else:
        _pending.n_threads = n_threads


def apply_pending() -> None:
    """Settle numba before a kernel's numba path runs: called by each such path.

    Waits for the preload's thread if one is loading numba (`preload.wait_for_preload`), then
    applies this thread's count kept by `set_num_threads`.
    """
    # Imported here: the preload imports the kernels, which import this module.
    from .preload import wait_for_preload

    wait_for_preload()
    n_threads = getattr(_pending, "n_threads", None)
    if n_threads is not None:
        _pending.n_threads = None
        _apply(n_threads)


def current() -> int:
    """The thread count a kernel called from this thread runs with, without importing numba.

    The count set for this thread if it is not applied yet, else numba's count if numba is loaded,
    else the CPUs this process may run on.
    """
    n_threads = getattr(_pending, "n_threads", None)
    if n_threads is not None:
        return int(n_threads)
    if "numba" in sys.modules:
        import numba

        return int(numba.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _apply(n_threads: int) -> None:
    import numba

    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
