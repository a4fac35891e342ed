"""Shards and their draws depend only on (seed, class, shard)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from deepsmote.runtime.plan import RealSlice, Shard, Unit, draw_shard, plan_mixed, plan_shards


def test_plan_cuts_fixed_size_shards_per_class():
    shards = plan_shards(np.array([0, 2500, 7]), shard_size=1000)
    assert [(s.class_index, s.shard_index, s.count) for s in shards] == [
        (1, 0, 1000),
        (1, 1, 1000),
        (1, 2, 500),
        (2, 0, 7),
    ]
    assert shards[2].name == "class-0001-shard-000002"


@pytest.mark.parametrize(
    ("seed", "class_index", "shard_index"), [(3, 1, 2), (4, 1, 2), (3, 2, 2), (3, 1, 3), (0, 0, 0)]
)
def test_draws_are_the_documented_stream_of_seed_class_and_shard(seed, class_index, shard_index):
    # docs/design.md §4: SeedSequence([seed, class, shard]); the bases, then the slots, then the gaps.
    drawn = draw_shard(seed, Shard(class_index, shard_index, 50), n_class=20, n_neighbors=5)
    rng = np.random.default_rng(np.random.SeedSequence([seed, class_index, shard_index]))
    base = rng.integers(0, 20, size=50, dtype=np.int64)
    slot = rng.integers(0, 5, size=50, dtype=np.int64)
    gap = rng.random(50, dtype=np.float32)
    for name, expected in (("base", base), ("slot", slot), ("gap", gap)):
        got = getattr(drawn, name)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), name


def test_each_of_seed_class_and_shard_changes_every_draw():
    first = draw_shard(3, Shard(1, 2, 50), n_class=20, n_neighbors=5)
    again = draw_shard(3, Shard(1, 2, 50), n_class=20, n_neighbors=5)
    assert all(np.array_equal(getattr(first, name), getattr(again, name)) for name in ("base", "slot", "gap"))
    for other in (
        draw_shard(4, Shard(1, 2, 50), n_class=20, n_neighbors=5),
        draw_shard(3, Shard(2, 2, 50), n_class=20, n_neighbors=5),
        draw_shard(3, Shard(1, 3, 50), n_class=20, n_neighbors=5),
    ):
        for name in ("base", "slot", "gap"):
            assert not np.array_equal(getattr(first, name), getattr(other, name)), name


def test_a_mixed_unit_interleaves_its_classes_evenly():
    unit = Unit("000000", synthetic=(Shard(0, 0, 6), Shard(1, 0, 2)))
    classes, synthetic, position, original = unit.order()
    assert classes.tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert synthetic.all() and not original.any() and position.tolist() == [0, 1, 0, 2, 3, 4, 1, 5]


def test_a_unit_spreads_each_class_originals_evenly_among_its_new_samples():
    unit = Unit("000000", synthetic=(Shard(0, 0, 4, repeats=1),), real=(RealSlice(0, 10, 12),))
    classes, synthetic, position, original = unit.order()
    assert classes.tolist() == [0] * 6
    assert original.tolist() == [False, False, True, False, False, True]
    assert synthetic.tolist() == [True, True, False, True, False, False]
    assert position.tolist() == [0, 1, 0, 2, 3, 1]


def test_mixed_units_hold_shard_size_samples_and_each_class_in_proportion():
    new, real = np.array([0, 200, 50]), np.array([300, 100, 10])
    units = plan_mixed(new, real, shard_size=64)
    assert [u.count for u in units] == [64] * 10 + [20]
    per_class = np.zeros((len(units), 3), dtype=int)
    for t, unit in enumerate(units):
        for part in (*unit.real, *unit.synthetic):
            per_class[t, part.class_index] += part.count
    assert per_class.sum(axis=0).tolist() == (new + real).tolist()
    assert (np.abs(per_class[:-1] / 64 - (new + real) / 660) < 0.03).all()
    # each class's originals are spread over the units in order, each holding about the job's real share
    shares = [sum(r.count for r in u.real) / u.count for u in list(units)[:-1]]
    assert max(abs(share - 410 / 660) for share in shares) < 0.03
    reals = [(r.class_index, r.start, r.stop) for u in units for r in u.real]
    for c in range(3):
        spans = [(a, b) for k, a, b in reals if k == c]
        assert spans[0][0] == 0 and spans[-1][1] == real[c]
        assert all(b == a2 for (_, b), (a2, _) in itertools.pairwise(spans))


def test_every_full_mixed_unit_of_the_demo_job_holds_the_job_share_of_originals_within_a_point():
    # the demo's job: 900 originals (400 down to 4 per class) filled to 400 each, in units of 1,000
    real = np.array([400, 200, 100, 75, 50, 35, 20, 10, 6, 4])
    units = list(plan_mixed(400 - real, real, shard_size=1000))
    assert len(units) == 4
    for unit in units:
        assert abs(sum(r.count for r in unit.real) / unit.count - 900 / 4000) <= 0.01
