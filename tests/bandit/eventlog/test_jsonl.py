"""What the joined-log reader refuses in a record's probability vector, and that it says which field."""

from __future__ import annotations

import math

import pytest

from bandit.eventlog.jsonl import check_record


def record(pmf: object, propensity: float = 0.5) -> dict[str, object]:
    return {"slot": "hero", "context": {}, "candidates": ["a", "b"], "chosen": "a", "propensity": propensity,
            "reward": 0.0, "pmf": pmf}  # fmt: skip


@pytest.mark.parametrize(
    "pmf",
    [[0.5, "0.5"], [0.5, True], [1.5, -0.5], [0.5, math.nan], [math.inf, 0.5], [math.inf, -math.inf], [1.0], "ab",
     [0.5, None], []],
)  # fmt: skip
def test_a_pmf_that_is_not_a_list_of_probabilities_is_refused(pmf: object) -> None:
    assert check_record(record(pmf)) == [("pmf", "must be a list of probabilities ≥ 0, one per candidate")]


def test_a_pmf_that_does_not_sum_to_one_is_refused() -> None:
    assert check_record(record([0.5, 0.4])) == [("pmf", "must sum to 1 (sums to 0.900000)")]


def test_a_usable_pmf_passes_with_ints_and_floats_and_must_agree_with_the_propensity() -> None:
    assert check_record(record([1, 0], propensity=1.0)) == []
    assert check_record(record([0.25, 0.75], propensity=0.25)) == []
    assert check_record(record([0.25, 0.75], propensity=0.75))[0][0] == "propensity"
