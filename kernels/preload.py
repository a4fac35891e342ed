"""numba and the k-NN kernel loaded in a background thread, while a job encodes DATA.

A class of more than ``MEDIUM_N`` codes takes the numba k-NN unless its job draws few enough bases
to find their neighbours in numpy (`knn_rows.row_kernel`), and a fresh process spends 0.4-1.5 s
importing numba and loading the compiled kernel before its first call. Started as soon as the
class sizes are known, that load overlaps with the encoding of DATA (onnxruntime releases the GIL),
instead of following it.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

import numpy as np

from .knn_rows import row_kernel

__all__ = ["preload_knn", "wait_for_preload"]

_lock = threading.Lock()
_loader: threading.Thread | None = None


def preload_knn(class_sizes: Iterable[int], draws: Iterable[int]) -> threading.Thread | None:
    """Start loading the numba k-NN in a background thread if a class of these sizes will need it.

    Parameters
    ----------
    class_sizes : iterable of int
        The number of codes of each class whose neighbours will be searched.
    draws : iterable of int
        For each of those classes, the most bases its job draws (0 for a class that does not grow:
        it needs no neighbours within the class).

    Returns
    -------
    threading.Thread or None
        The loading thread (started once per process), or None where no class needs numba or it is
        loaded already. The thread is not a daemon: the interpreter waits for it before it exits,
        never stopping numba halfway through loading. A failure in it is dropped: the k-NN's own
        call then fails the same way, where the job reports it.
    """
    global _loader
    if not any(row_kernel(int(n), int(b)) == "numba" for n, b in zip(class_sizes, draws, strict=True)):
        return None
    with _lock:
        if _loader is not None or "deepsmote.kernels.knn_numba" in sys.modules:
            return None
        _loader = threading.Thread(target=_load_knn_numba, name="deepsmote-numba-preload")
        _loader.start()
        return _loader


def wait_for_preload() -> None:
    """Return once the preload's thread, if one was started, has finished.

    Each numba path waits here (through `threads.apply_pending`) before it runs a kernel, so no
    kernel runs beside the preload's own call: numba's workqueue threading layer, the one left
    where neither TBB nor OpenMP is installed, aborts when parallel kernels start from two threads
    at once.
    """
    loader = _loader
    if loader is not None and loader is not threading.current_thread():
        loader.join()


def _load_knn_numba() -> None:
    try:
        from .knn_cross_numba import kneighbors_of_padded
        from .knn_numba import padded_codes, sq_norms

        # A first call loads the compiled kernels a job calls first, for the argument types every
        # call passes (float32 C-contiguous codes, int64 rows, an int k), so the job's own calls
        # find them loaded. The whole search, which a job reaches later if at all, loads then.
        codes = np.arange(48, dtype=np.float32).reshape(12, 4)
        kneighbors_of_padded(padded_codes(codes), len(codes), sq_norms(codes), np.arange(12), 1)
    except Exception:
        # The job's own call raises the same error, where it is reported.
        return
