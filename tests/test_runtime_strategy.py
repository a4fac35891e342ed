"""sampling_strategy semantics, checked against imbalanced-learn's own resolution."""

from __future__ import annotations

import numpy as np
import pytest
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.strategy import new_sample_counts, parse_strategy
from imblearn.utils import check_sampling_strategy

COUNTS = [40, 10, 25, 3]
NAMES = [0, 1, 2, 3]
Y = np.repeat(NAMES, COUNTS)


def ours(strategy):
    return dict(enumerate(new_sample_counts(strategy, COUNTS, NAMES, Y).tolist()))


def imblearn(strategy):
    resolved = check_sampling_strategy(strategy, Y, "over-sampling")
    return {c: int(resolved.get(c, 0)) for c in NAMES}


@pytest.mark.parametrize(
    "strategy",
    ["auto", "minority", "not majority", "not minority", "all", {1: 20, 3: 40}, lambda y: {3: 12}],
)
def test_matches_imbalanced_learn(strategy):
    assert ours(strategy) == imblearn(strategy)


def test_float_for_two_classes():
    y = np.repeat([0, 1], [100, 10])
    assert new_sample_counts(0.5, [100, 10], [0, 1], y).tolist() == [0, 40]
    assert dict(check_sampling_strategy(0.5, y, "over-sampling")) == {1: 40}


def test_dict_keys_match_names_or_their_strings():
    assert new_sample_counts({"3": 10}, COUNTS, NAMES).tolist() == [0, 0, 0, 7]


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        ("majority", "must be one of"),
        ({9: 50}, "not in the data"),
        ({1: 5}, "can only add samples"),
        ({1: 2.5}, "must be an integer"),
        (0.5, "only for two classes"),
        (object(), "must be a str"),
        (lambda y: [1, 2], "must return a dict"),
    ],
)
def test_bad_strategies(strategy, match):
    with pytest.raises(DeepSMOTEError, match=match):
        new_sample_counts(strategy, COUNTS, NAMES, Y)


def test_float_below_current_ratio():
    with pytest.raises(DeepSMOTEError, match=r"at least 0\.100"):
        new_sample_counts(0.05, [100, 10], [0, 1])


@pytest.mark.parametrize(
    ("text", "parsed"), [("not-majority", "not majority"), ("auto", "auto"), ('{"3": 9}', {"3": 9})]
)
def test_parse_strategy(text, parsed):
    assert parse_strategy(text) == parsed


@pytest.mark.parametrize("text", ["most", "{bad json", '{"3": "x"}'])
def test_parse_strategy_rejects(text):
    with pytest.raises(DeepSMOTEError, match="--strategy"):
        parse_strategy(text)
