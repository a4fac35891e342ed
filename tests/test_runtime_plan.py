"""Shards and their draws depend only on (seed, class, shard)."""

from __future__ import annotations

import numpy as np
from deepsmote.runtime.plan import Shard, draw_shard, plan_shards


def test_plan_cuts_fixed_size_shards_per_class():
    shards = plan_shards(np.array([0, 2500, 7]), shard_size=1000)
    assert [(s.class_index, s.shard_index, s.count) for s in shards] == [
        (1, 0, 1000),
        (1, 1, 1000),
        (1, 2, 500),
        (2, 0, 7),
    ]
    assert shards[2].name == "class-0001-shard-000002"


def test_draws_are_a_function_of_seed_class_and_shard():
    a = draw_shard(3, Shard(1, 2, 50), n_class=20, n_neighbors=5)
    b = draw_shard(3, Shard(1, 2, 50), n_class=20, n_neighbors=5)
    c = draw_shard(3, Shard(1, 3, 50), n_class=20, n_neighbors=5)
    for name in ("base", "slot", "gap"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.base, c.base)
    assert a.base.min() >= 0 and a.base.max() < 20
    assert a.slot.min() >= 0 and a.slot.max() < 5
    assert a.gap.dtype == np.float32 and a.gap.min() >= 0 and a.gap.max() < 1
