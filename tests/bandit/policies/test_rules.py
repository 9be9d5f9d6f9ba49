"""The rules tier: rule matching, ordered item lists, default, fallback, exploration spread."""

from __future__ import annotations

import math

import pytest

from bandit.config import Condition, SlotConfig, parse_config
from bandit.policies.base import Decision
from bandit.policies.rules import RulesPolicy

CONFIG = """\
catalog:
  items:
    - {id: a, publisher: p1}
    - {id: b, publisher: p1}
    - {id: c, publisher: p2}
    - {id: d, publisher: p3}
    - {id: e, publisher: p4}
context:
  country: {type: category, values: [US, JP, FR]}
  device: {type: category, values: [quest, pcvr]}
  hour: {type: hour}
  age: {type: integer}
slots:
  - name: hero
    exploration: 0.2
    rules:
      - name: japan-quest
        when: {country: JP, device: quest}
        items: [c]
      - name: japan
        when: {country: JP}
        items: [b, a]
      - name: not-france
        when: {country: {not_in: [FR]}}
        items: [d]
      - name: late
        when: {hour: {from: 22, to: 3}}
        items: [e]
    default: [a, c]
reward: {window: 1h}
"""


@pytest.fixture(scope="module")
def hero() -> RulesPolicy:
    return RulesPolicy(parse_config(CONFIG).slot("hero"), "v1")


def favourite_of(policy: RulesPolicy, context, candidates) -> tuple[str | None, str]:
    index, why = policy.favourite(context, candidates)
    return (None if index is None else candidates[index]), why


ALL = ["a", "b", "c", "d", "e"]


def test_first_match_wins(hero):
    # Both 'japan-quest' and 'japan' match; the first one listed decides.
    assert favourite_of(hero, {"country": "JP", "device": "quest"}, ALL) == ("c", "rule:japan-quest")
    assert favourite_of(hero, {"country": "JP", "device": "pcvr"}, ALL) == ("b", "rule:japan")


def test_every_condition_of_a_rule_must_hold(hero):
    # 'japan-quest' needs JP *and* quest.
    assert favourite_of(hero, {"country": "US", "device": "quest"}, ALL) == ("d", "rule:not-france")


def test_ordered_item_list_falls_through_to_next_eligible_item(hero):
    assert favourite_of(hero, {"country": "JP"}, ["a", "c", "d"]) == ("a", "rule:japan")


def test_rule_without_eligible_item_passes_to_the_next_matching_rule(hero):
    # 'japan' matches but neither b nor a is eligible; 'not-france' matches too and d is.
    assert favourite_of(hero, {"country": "JP"}, ["c", "d", "e"]) == ("d", "rule:not-france")


def test_default_when_no_rule_matches(hero):
    assert favourite_of(hero, {"country": "FR", "hour": 12}, ALL) == ("a", "default")


def test_default_list_falls_through(hero):
    assert favourite_of(hero, {"country": "FR"}, ["b", "c", "d"]) == ("c", "default")


def test_uniform_fallback_when_nothing_named_is_eligible(hero):
    probs, why = hero.pmf({"country": "FR"}, ["b", "d", "e"])
    assert why == "fallback:uniform"
    assert probs == [1 / 3] * 3


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exploration_is_spread_evenly_over_the_others(hero, n):
    candidates = ALL[:n]
    probs, why = hero.pmf({"country": "FR"}, candidates)  # default: a, at index 0
    assert why == "default"
    if n == 1:
        assert probs == [1.0]
    else:
        assert probs[0] == pytest.approx(0.8)
        assert probs[1:] == pytest.approx([0.2 / (n - 1)] * (n - 1))
    assert math.fsum(probs) == pytest.approx(1.0, abs=1e-12)


def test_favourite_keeps_its_place_in_the_candidate_order(hero):
    probs, _ = hero.pmf({"country": "JP", "device": "pcvr"}, ["e", "b", "a"])
    assert probs == pytest.approx([0.1, 0.8, 0.1])


def test_conditions_on_a_missing_field_are_false(hero):
    # 'not-france' is a not_in: a shopper with no country must not match it.
    assert favourite_of(hero, {}, ALL) == ("a", "default")
    assert favourite_of(hero, {"country": "FR"}, ALL) == ("a", "default")


@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "hours"])
def test_every_operator_is_false_on_a_missing_field(op):
    value = {"in": frozenset({1}), "not_in": frozenset({1}), "between": (0, 10), "hours": (22, 3)}.get(op, 5)
    assert not Condition("x", op, value).matches({})
    assert not Condition("x", op, value).matches({"y": 5})


@pytest.mark.parametrize(
    ("op", "value", "x", "expected"),
    [
        ("eq", "JP", "JP", True),
        ("eq", "JP", "US", False),
        ("ne", "JP", "US", True),
        ("ne", "JP", "JP", False),
        ("in", frozenset({"JP", "KR"}), "KR", True),
        ("in", frozenset({"JP", "KR"}), "US", False),
        ("not_in", frozenset({"FR"}), "US", True),
        ("not_in", frozenset({"FR"}), "FR", False),
        ("gt", 18, 19, True),
        ("gt", 18, 18, False),
        ("gte", 18, 18, True),
        ("gte", 18, 17, False),
        ("lt", 18, 17, True),
        ("lt", 18, 18, False),
        ("lte", 18, 18, True),
        ("lte", 18, 19, False),
        ("between", (13, 24), 13, True),
        ("between", (13, 24), 24, True),
        ("between", (13, 24), 25, False),
        ("between", (13, 24), 12, False),
    ],
)
def test_operators(op, value, x, expected):
    assert Condition("f", op, value).matches({"f": x}) is expected


@pytest.mark.parametrize(
    ("window", "inside"),
    [
        ((22, 3), {22, 23, 0, 1, 2}),  # wraps past midnight; 'to' is exclusive
        ((9, 17), set(range(9, 17))),
        ((0, 1), {0}),
        ((23, 0), {23}),
        ((1, 0), set(range(1, 24))),
    ],
)
def test_hour_windows(window, inside):
    condition = Condition("hour", "hours", window)
    assert {h for h in range(24) if condition.matches({"hour": h})} == inside


def test_hour_window_rule_wraps_midnight(hero):
    late = [h for h in range(24) if favourite_of(hero, {"country": "FR", "hour": h}, ALL)[1] == "rule:late"]
    assert late == [0, 1, 2, 22, 23]


def test_choose_returns_a_decision_with_its_propensity(hero):
    decision = hero.choose({"country": "JP", "device": "pcvr"}, ["a", "b", "c"], u=0.5, position=2)
    assert decision == Decision(
        slot="hero",
        position=2,
        item="b",
        propensity=pytest.approx(0.8),
        candidates=("a", "b", "c"),
        pmf=decision.pmf,
        tier="rules",
        policy_version="v1",
        explanation="rule:japan",
    )
    assert decision.pmf == pytest.approx((0.1, 0.8, 0.1))
    assert Decision.from_dict(decision.to_dict()) == decision


@pytest.mark.parametrize(
    ("u", "item"), [(0.0, "a"), (0.0999, "a"), (0.1, "b"), (0.8999, "b"), (0.9, "c"), (0.99999, "c")]
)
def test_choose_samples_by_inverse_cdf(hero, u, item):
    assert hero.choose({"country": "JP", "device": "pcvr"}, ["a", "b", "c"], u=u).item == item


def test_no_candidates_is_an_error(hero):
    with pytest.raises(ValueError, match="no eligible candidates"):
        hero.pmf({}, [])


@pytest.mark.parametrize("exploration", [0.0, -0.1, 1.5])
def test_exploration_outside_0_1_is_refused(exploration):
    with pytest.raises(ValueError, match="exploration must be in"):
        RulesPolicy(SlotConfig("s", 0, "rules", exploration, (), ("a",)))


def test_condition_yaml_round_trip():
    assert Condition("c", "eq", "JP").to_yaml() == "JP"
    assert Condition("c", "in", frozenset({"KR", "JP"})).to_yaml() == {"in": ["JP", "KR"]}
    assert Condition("h", "hours", (22, 3)).to_yaml() == {"from": 22, "to": 3}
    assert Condition("a", "between", (13, 24)).to_yaml() == {"between": [13, 24]}
    assert Condition("a", "gte", 18).to_yaml() == {"gte": 18}


def test_a_requests_baseline_comes_after_the_rules_and_before_the_default(hero):
    scoped = hero.with_request(baseline="e")
    assert favourite_of(scoped, {"country": "JP", "device": "pcvr"}, ALL) == ("b", "rule:japan")  # a rule wins
    assert favourite_of(scoped, {"country": "FR", "hour": 12}, ALL) == ("e", "baseline")  # then the baseline
    assert favourite_of(scoped, {"country": "FR", "hour": 12}, ["a", "b"]) == ("a", "default")  # not eligible
    assert favourite_of(hero, {"country": "FR", "hour": 12}, ALL) == ("a", "default")  # the policy is unchanged
    assert hero.with_request() is hero and hero.with_request(items={}) is hero
