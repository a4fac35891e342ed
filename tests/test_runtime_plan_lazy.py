"""The lazy unit plans against the eager references of tests/naive.py, and their memory."""

from __future__ import annotations

import naive
import numpy as np
from deepsmote.runtime.plan import plan_mixed, plan_per_class
from hypothesis import given, settings
from hypothesis import strategies as st

# Many classes with small counts, often equal (ties of keys between classes) or zero.
counts = st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 10, 12, 15, 30]), min_size=1, max_size=12)


def class_units(units, k):
    held = np.zeros(k, dtype=int)
    for unit in units:
        for c in {part.class_index for part in (*unit.synthetic, *unit.real)}:
            held[c] += 1
    return held.tolist()


@settings(max_examples=120, deadline=None)
@given(counts, st.data(), st.integers(1, 40))
def test_the_lazy_mixed_plan_is_the_eager_one(new, data, shard_size):
    real = data.draw(st.none() | st.lists(st.integers(0, 12), min_size=len(new), max_size=len(new)))
    eager = naive.plan_mixed_eager(np.array(new), None if real is None else np.array(real), shard_size)
    lazy = plan_mixed(np.array(new), None if real is None else np.array(real), shard_size)
    assert len(lazy) == len(eager)
    assert list(lazy) == eager
    assert [lazy[t] for t in range(len(lazy))] == eager
    assert lazy.class_units().tolist() == class_units(eager, len(new))
    assert [lazy.locate(u.name) for u in eager] == list(range(len(eager)))
    assert lazy.locate(f"{len(eager):06d}") is None and lazy.locate("class-0000-shard-000000") is None


@settings(max_examples=60, deadline=None)
@given(counts, st.data(), st.integers(1, 40))
def test_the_lazy_per_class_plan_is_the_eager_one(new, data, shard_size):
    real = data.draw(st.none() | st.lists(st.integers(0, 12), min_size=len(new), max_size=len(new)))
    eager = naive.plan_per_class_eager(np.array(new), None if real is None else np.array(real), shard_size)
    lazy = plan_per_class(np.array(new), None if real is None else np.array(real), shard_size)
    assert len(lazy) == len(eager) and list(lazy) == eager
    assert [lazy[t] for t in range(-len(lazy), 0)] == eager
    assert lazy.class_units().tolist() == class_units(eager, len(new))
    assert [lazy.locate(u.name) for u in eager] == list(range(len(eager)))
    assert lazy.locate("000000") is None and lazy.locate(f"class-{len(new):04d}-shard-000000") is None


def test_the_mixed_plan_matches_on_large_uneven_counts():
    new, real = np.array([12345, 1, 999, 0, 4000, 4000]), np.array([7, 0, 3000, 5, 0, 2])
    eager = naive.plan_mixed_eager(new, real, 97)
    lazy = plan_mixed(new, real, 97)
    assert list(lazy) == eager and lazy[-1] == eager[-1] and lazy[137] == eager[137]
    assert lazy.class_units().tolist() == class_units(eager, 6)
