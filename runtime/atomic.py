"""The one way deepsmote writes a file: beside its final name, then renamed into place.

A reader never sees half a file, and a write that fails or is interrupted (an exception, Ctrl-C,
SIGTERM) removes its temporary file. The temporary name is hidden (a leading dot) and ends in
:data:`TMP_SUFFIX`, so no DATA reader takes it for an image and a resumed job finds and removes
what a killed one left.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TMP_SUFFIX", "atomic_path", "write_bytes_atomic"]

TMP_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed onto ``path`` when the block ends.

    Parameters
    ----------
    path : path-like
        The final file.

    Yields
    ------
    Path
        ``.NAME.partial`` in ``path``'s directory. If the block raises, it is removed and the
        exception propagates; ``path`` is left as it was.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
