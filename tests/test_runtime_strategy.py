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


# Majority counts whose products with the ratios are rarely integers: 7 x 0.5 = 3.5 truncates to 3
# (1 new sample for a class of 2), where rounding would make 4 (2 new samples). A ratio that asks
# for no new sample is left out: imbalanced-learn refuses it, deepsmote adds none.
FLOAT_CASES = [
    (majority, minority, ratio, first)
    for majority in (7, 9, 13, 100, 101)
    for minority in (1, 2, 3)
    for ratio in (0.3, 0.5, 0.55, 2 / 3, 0.7, 0.99, 1.0)
    for first in (True, False)
    if int(majority * ratio) > minority
]


def test_float_cases_hold_products_that_rounding_would_change():
    # The check below can fail: in these cases rounding and truncation ask for other counts.
    assert sum(round(m * r) != int(m * r) for m, _, r, _ in FLOAT_CASES) >= 10


@pytest.mark.parametrize(("majority", "minority", "ratio", "minority_first"), FLOAT_CASES)
def test_a_float_strategy_matches_imbalanced_learn_on_non_integer_products(majority, minority, ratio, minority_first):
    counts = [minority, majority] if minority_first else [majority, minority]
    y = np.repeat([0, 1], counts)
    resolved = check_sampling_strategy(ratio, y, "over-sampling")
    expected = [int(resolved.get(c, 0)) for c in (0, 1)]
    assert new_sample_counts(ratio, counts, [0, 1], y).tolist() == expected
