"""Rewards from posted shopper events, and the joined records learners read."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from bandit.config import RewardConfig
from bandit.eventlog.events import JOINED_FORMAT, check_reward_number, is_learnable, joined_records, reward_value
from bandit.policies.base import Decision

CONFIG = RewardConfig(
    window_seconds=1800.0,
    default=-0.5,
    events=MappingProxyType({"click": 1.0, "add_to_cart": 3.0, "purchase": 10.0}),
    revenue_weight=0.1,
)


@pytest.mark.parametrize(
    ("posted", "reward"),
    [
        ({}, -0.5),  # nothing posted in the window: the configured default
        ({"click": {}}, 1.0),
        ({"click": {}, "add_to_cart": {}}, 4.0),  # distinct event types add up
        ({"purchase": {"revenue": 30.0}}, 13.0),  # weight + revenue_weight × revenue
        ({"click": {}, "add_to_cart": {}, "purchase": {"revenue": 30}}, 17.0),
        ({"purchase": {}}, 10.0),  # a purchase without revenue earns its weight only
        ({"purchase": {"revenue": None}}, 10.0),
        ({"reward": 2.5}, 2.5),  # an explicit reward alone is not "nothing posted"
        ({"reward": 0}, 0.0),
        ({"click": {}, "reward": -1.0}, 0.0),
        ({"wishlist": {}}, 0.0),  # an event type the config does not weigh contributes 0
        ({"wishlist": {}, "click": {}}, 1.0),
        ({"click": {"revenue": 100.0}}, 1.0),  # only a purchase earns revenue
    ],
)
def test_reward_value(posted, reward):
    assert reward_value(CONFIG, posted) == pytest.approx(reward)


def test_revenue_weight_scales_the_purchase_revenue():
    heavy = RewardConfig(60.0, 0.0, MappingProxyType({"purchase": 0.0}), revenue_weight=2.0)
    assert reward_value(heavy, {"purchase": {"revenue": 7.0}}) == 14.0
    unweighted = RewardConfig(60.0, 0.0, MappingProxyType({"purchase": 5.0}), revenue_weight=0.0)
    assert reward_value(unweighted, {"purchase": {"revenue": 7.0}}) == 5.0


@pytest.mark.parametrize(("value", "ok"), [(1, 1.0), (2.5, 2.5), (-3, -3.0)])
def test_check_reward_number_accepts(value, ok):
    assert check_reward_number(value) == ok
    assert type(check_reward_number(value)) is float


@pytest.mark.parametrize("value", [True, "1", None, math.nan, math.inf, -math.inf, [1]])
def test_check_reward_number_refuses(value):
    with pytest.raises(ValueError, match="must be a finite number"):
        check_reward_number(value)


def _decision(slot: str, position: int, item: str, candidates: tuple[str, ...], pmf: tuple[float, ...]) -> Decision:
    return Decision(
        slot=slot,
        position=position,
        item=item,
        propensity=pmf[candidates.index(item)],
        candidates=candidates,
        pmf=pmf,
        tier="rules",
        policy_version="cfg-1",
        explanation="default",
    )


EVENT = {
    "event_id": "evt-42",
    "ts": 1_700_000_000.0,
    "config_version": "cfg-1",
    "context": {"country": "JP", "device": "quest"},
    "decisions": [
        _decision("hero", 0, "b", ("a", "b", "c"), (0.05, 0.9, 0.05)).to_dict(),
        _decision("row-1", 1, "c", ("a", "c"), (0.1, 0.9)).to_dict(),
        _decision("row-2", 2, "a", ("a",), (1.0,)).to_dict(),
    ],
}


def test_joined_records_one_per_decision_with_every_field():
    rewards = {
        "hero": {"click": {}, "purchase": {"revenue": 20.0}, "reward": 1.5},
        "row-1": {"add_to_cart": {}},
    }
    hero, row1, row2 = joined_records(EVENT, rewards, CONFIG, joined_at=1_700_001_800.0)
    assert hero == {
        "format": JOINED_FORMAT,
        "event_id": "evt-42",
        "ts": 1_700_000_000.0,
        "joined_at": 1_700_001_800.0,
        "slot": "hero",
        "position": 0,
        "context": {"country": "JP", "device": "quest"},
        "candidates": ["a", "b", "c"],
        "pmf": [0.05, 0.9, 0.05],
        "chosen": "b",
        "propensity": 0.9,
        "tier": "rules",
        "policy_version": "cfg-1",
        "config_version": "cfg-1",
        "explanation": "default",
        "outcomes": ["click", "purchase"],  # sorted, without the explicit reward
        "revenue": 20.0,
        "explicit_reward": 1.5,
        "reward": pytest.approx(1.0 + 10.0 + 2.0 + 1.5),
        "defaulted": False,
    }
    assert (row1["slot"], row1["chosen"], row1["outcomes"], row1["reward"]) == ("row-1", "c", ["add_to_cart"], 3.0)
    assert (row1["revenue"], row1["explicit_reward"], row1["defaulted"]) == (None, None, False)
    # Nothing posted for row-2: the default reward, flagged as such.
    assert (row2["reward"], row2["defaulted"], row2["outcomes"], row2["propensity"]) == (-0.5, True, [], 1.0)


def test_joined_record_reward_matches_reward_value():
    posted = {"click": {}, "wishlist": {}}
    (hero, *_) = joined_records(EVENT, {"hero": posted}, CONFIG, joined_at=0.0)
    assert hero["reward"] == reward_value(CONFIG, posted) == 1.0
    assert hero["outcomes"] == ["click", "wishlist"]


def test_joined_records_of_an_event_without_decisions():
    assert joined_records({**EVENT, "decisions": []}, {}, CONFIG, joined_at=0.0) == []


def test_a_requests_own_items_are_kept_with_the_decisions_that_had_them_and_not_learned_from():
    own = {"b": {"publisher": "indie", "features": {"genre": "sim"}}, "z": {"publisher": "z", "features": {}}}
    hero, row1, row2 = joined_records({**EVENT, "actions": own}, {}, CONFIG, joined_at=0.0)
    assert hero["actions"] == {"b": own["b"]}  # only what was among the decision's candidates
    assert "actions" not in row1 and "actions" not in row2
    assert not is_learnable(hero) and is_learnable(row1)
