"""``sampling_strategy`` to the number of new samples per class, as imbalanced-learn defines it
for over-samplers.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np

from .errors import InvalidInputError

STRATEGY_NAMES = ("auto", "minority", "not majority", "not minority", "all")

# The most samples a class may be asked to reach: a petabyte even at one byte per sample, so no
# real job is refused, and far enough below 2**63 that sums over classes stay exact in int64.
MAX_CLASS_COUNT = 10**15


def parse_strategy(text: str) -> str | dict[str, int]:
    """A CLI ``--strategy`` value: a name (``not-majority`` or ``not majority``) or JSON ``{class: count}``."""
    name = text.strip().replace("-", " ")
    if name in STRATEGY_NAMES:
        return name
    if text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--strategy: invalid JSON ({exc.msg}); use e.g. '{{\"3\": 500}}'") from None
        except (ValueError, RecursionError):
            # A number of thousands of digits, or nesting deeper than the parser's stack.
            raise InvalidInputError(
                f"--strategy: a number or a nesting too large to read; counts are at most {MAX_CLASS_COUNT:.0e}"
            ) from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in mapping.values()):
            raise InvalidInputError(f"--strategy: counts must be integers, got {mapping}")
        return {str(k): v for k, v in mapping.items()}
    raise InvalidInputError(
        f"--strategy must be one of {', '.join(s.replace(' ', '-') for s in STRATEGY_NAMES)} "
        f"or a JSON object {{class: count}}, got {text!r}"
    )


def new_sample_counts(
    sampling_strategy: str | float | Mapping[Any, int] | Callable[[np.ndarray], Mapping[Any, int]],
    counts: Sequence[int],
    names: Sequence[Any],
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """How many synthetic samples each class gets.

    Parameters
    ----------
    sampling_strategy : str, float, dict or callable
        imbalanced-learn's over-sampling meaning: ``'auto'`` (= ``'not majority'``),
        ``'minority'``, ``'not minority'``, ``'all'`` fill classes up to the majority count;
        a float (two classes only) is the wanted minority/majority ratio after resampling;
        a dict maps a class to its count after resampling; a callable takes the label
        vector and returns such a dict.
    counts : sequence of int, shape (K,)
        Current number of samples per class.
    names : sequence, shape (K,)
        Class names; dict keys match a name or its ``str``.
    labels : np.ndarray, optional
        The label vector handed to a callable strategy (default: names repeated by counts).

    Returns
    -------
    np.ndarray
        int64, shape (K,), new samples per class.
    """
    counts = np.asarray(counts, dtype=np.int64)
    majority = int(np.argmax(counts))
    minority = int(np.argmin(counts))
    target = counts.max()
    new = np.zeros_like(counts)
    if callable(sampling_strategy):
        if labels is None:
            labels = np.repeat(np.asarray(names, dtype=object), counts)
        sampling_strategy = sampling_strategy(labels)
        if not isinstance(sampling_strategy, Mapping):
            raise InvalidInputError(
                f"sampling_strategy callable must return a dict, got {type(sampling_strategy).__name__}"
            )
    if isinstance(sampling_strategy, str):
        name = sampling_strategy.replace("-", " ")
        chosen = {
            "auto": [c for c in range(len(counts)) if c != majority],
            "not majority": [c for c in range(len(counts)) if c != majority],
            "minority": [minority],
            "not minority": [c for c in range(len(counts)) if c != minority],
            "all": list(range(len(counts))),
        }.get(name)
        if chosen is None:
            raise InvalidInputError(
                f"sampling_strategy must be one of {', '.join(repr(s) for s in STRATEGY_NAMES)}, a float, "
                f"a dict or a callable, got '{sampling_strategy}'"
            )
        new[chosen] = target - counts[chosen]
        return new
    if isinstance(sampling_strategy, Real) and not isinstance(sampling_strategy, bool):
        if len(counts) != 2:
            raise InvalidInputError(f"a float sampling_strategy is only for two classes, got {len(counts)} classes")
        ratio = float(sampling_strategy)
        if not 0 < ratio <= 1:
            raise InvalidInputError(f"a float sampling_strategy must be in (0, 1], got {ratio}")
        wanted = int(counts[majority] * ratio)
        if wanted < counts[minority]:
            raise InvalidInputError(
                f"sampling_strategy {ratio} asks for {wanted} minority samples, fewer than the "
                f"{counts[minority]} there are; use a ratio of at least {counts[minority] / counts[majority]:.3f}"
            )
        new[minority] = wanted - counts[minority]
        return new
    if isinstance(sampling_strategy, Mapping):
        index = {**{str(n): i for i, n in enumerate(names)}, **{n: i for i, n in enumerate(names)}}
        for key, count in sampling_strategy.items():
            if key not in index and str(key) not in index:
                raise InvalidInputError(
                    f"sampling_strategy names class {key!r}, which is not in the data {list(names)}"
                )
            c = index[key] if key in index else index[str(key)]
            if isinstance(count, bool) or not isinstance(count, int | np.integer):
                raise InvalidInputError(f"sampling_strategy count for class {key!r} must be an integer, got {count!r}")
            if count > MAX_CLASS_COUNT:
                raise InvalidInputError(
                    f"sampling_strategy asks for {_short(count)} samples of class {key!r}, more than the "
                    f"{MAX_CLASS_COUNT:.0e} a class may reach; ask for fewer"
                )
            if count < counts[c]:
                raise InvalidInputError(
                    f"sampling_strategy asks for {count} samples of class {key!r}, which has {counts[c]}; "
                    "an over-sampler can only add samples"
                )
            new[c] = count - counts[c]
        return new
    raise InvalidInputError(
        f"sampling_strategy must be a str, float, dict or callable, got {type(sampling_strategy).__name__}"
    )


def _short(count: int) -> str:
    """``count`` for a message: its digits, or its size when too long to print (``str`` refuses >4300 digits)."""
    return str(count) if count.bit_length() <= 100 else f"a {count.bit_length()}-bit number"
