"""The one exception type that every user-facing failure raises, and how the CLI words it.

The CLI prints its message as a single line and exits non-zero; the Python API lets it
propagate. Messages name the problem and the fix. A message names a parameter of the library
call in backticks (`` `out` ``, `` `k_neighbors` ``); the CLI shows that as the flag that sets it
(``--out``, ``--k``), so one message serves both.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import re

__all__ = [
    "TRAINING_MODULES",
    "BundleNotFoundError",
    "DeepSMOTEError",
    "InvalidInputError",
    "cli_message",
    "missing_training_extra",
]

_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")
# Parameters whose flag is not their name with dashes.
_FLAGS = {
    "k_neighbors": "--k",
    "sampling_strategy": "--strategy",
    "fmt": "--format",
    "n_threads": "--threads",
    "filter_threshold": "--filter",
    "target": "--html",  # write_report's page
}


# Modules of the ``train`` extra: a command that misses one is told how to install it.
TRAINING_MODULES = frozenset({"torch", "onnx", "onnxscript", "matplotlib"})


class DeepSMOTEError(Exception):
    """A problem with the user's input, bundle or environment, with a one-line message."""


class InvalidInputError(DeepSMOTEError, ValueError):
    """A parameter or argument value that the call cannot take (a bad ``k_neighbors``, ``X``,
    ``sampling_strategy`` ...): also a ``ValueError``, as scikit-learn and imbalanced-learn raise.

    Kept apart from :class:`DeepSMOTEError` so that I/O failures (unreadable files, a full disk)
    are not ``ValueError``s, and the readers' handling of library ``ValueError`` never catches it.
    """


class BundleNotFoundError(DeepSMOTEError, FileNotFoundError):
    """A bundle path where nothing is: also a ``FileNotFoundError``, as a missing file is in Python."""


def missing_training_extra(module: str) -> DeepSMOTEError:
    """The error for a command that needs the ``train`` extra and could not import ``module``."""
    return DeepSMOTEError(
        "this command needs the training extra: pip install torch==2.13.0 && pip install 'deepsmote[train]' "
        f"(missing module '{module}')"
    )


def cli_message(message: str) -> str:
    """``message`` with each `` `parameter` `` replaced by its command-line flag."""
    return _PARAMETER.sub(lambda m: _FLAGS.get(m[1], "--" + m[1].replace("_", "-")), message)
