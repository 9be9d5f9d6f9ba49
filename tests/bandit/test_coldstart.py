"""Cold start: new catalog items get their budget in the served probabilities, until they have N impressions."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bandit.coldstart import ColdStart
from bandit.config import ColdStartSettings, ConfigError, StoreConfig, parse_config
from bandit.page import PageFiller

STORE = """\
catalog:
  items:
    - {id: a, publisher: p1}
    - {id: b, publisher: p2}
    - {id: c, publisher: p3}
context:
  country: {type: category, values: [US, FR]}
slots:
  - name: hero
    exploration: 0.1
    cold_start: {impressions: 300, share: 0.2}
    default: a
  - name: row-1
    exploration: 0.1
    default: b
reward: {window: 30m}
"""


def store(text: str = STORE) -> StoreConfig:
    return parse_config(text, "store.yaml")


def with_new_item(text: str = STORE) -> StoreConfig:
    return store(
        text.replace("    - {id: c, publisher: p3}\n", "    - {id: c, publisher: p3}\n    - {id: n, publisher: p4}\n")
    )


def test_the_section_parses_with_defaults_and_refuses_bad_values() -> None:
    assert store().slot("hero").cold_start == ColdStartSettings(300, 0.2)
    assert store().slot("row-1").cold_start is None
    assert store(STORE.replace("{impressions: 300, share: 0.2}", "{}")).slot("hero").cold_start == ColdStartSettings()
    with pytest.raises(ConfigError, match=r"store.yaml:11: slots\[0\].cold_start.share: must be ≤ 0.5"):
        store(STORE.replace("share: 0.2", "share: 0.9"))
    with pytest.raises(
        ConfigError, match=r"slots\[0\].cold_start.budget: unknown key; allowed here: impressions, share"
    ):
        store(STORE.replace("share: 0.2", "budget: 0.2"))


def test_items_of_the_first_config_are_established_and_a_reload_adds_new_ones() -> None:
    tracker = ColdStart()
    tracker.configure(store())
    assert tracker.new == frozenset()
    tracker.configure(with_new_item())
    assert tracker.new == {"n"}
    tracker.configure(store())  # removed again: forgotten
    assert tracker.new == frozenset()


def test_a_new_item_gets_exactly_its_budget_in_the_logged_pmf_until_it_has_its_impressions() -> None:
    filler = PageFiller(store())
    filler = PageFiller(with_new_item(), coldstart=filler.coldstart)  # a reload that adds item n
    shown: Counter[str] = Counter()
    pages = 0
    while filler.coldstart.impressions("hero", "n") < 300:
        decision = filler.fill({"country": "US"}, f"e{pages}", slots=["hero"]).decisions[0]
        pmf = dict(zip(decision.candidates, decision.pmf, strict=True))
        # rules: 0.9 on a, 0.1 / 3 on the others; then 80 % of that plus the 20 % budget on n
        assert math.isclose(pmf["a"], 0.8 * 0.9)
        assert math.isclose(pmf["n"], 0.8 * 0.1 / 3 + 0.2)
        assert math.isclose(sum(decision.pmf), 1.0)
        assert decision.propensity == pmf[decision.item]
        shown[decision.item] += 1
        pages += 1
    assert 0.18 < shown["n"] / pages < 0.25  # the budget plus its share of the exploration
    decision = filler.fill({"country": "US"}, "after", slots=["hero"]).decisions[0]
    assert math.isclose(dict(zip(decision.candidates, decision.pmf, strict=True))["n"], 0.1 / 3)  # budget spent
    # A slot without a budget never mixes it in.
    row = filler.fill({"country": "US"}, "row", slots=["row-1"]).decisions[0]
    assert math.isclose(dict(zip(row.candidates, row.pmf, strict=True))["n"], 0.1 / 3)


def test_draws_replay_from_the_event_id_and_the_explanation_says_cold_start() -> None:
    a = PageFiller(with_new_item(), coldstart=ColdStart())
    a.coldstart.launch(["n"])
    b = PageFiller(with_new_item(), coldstart=ColdStart())
    b.coldstart.launch(["n"])
    picks = [a.fill({"country": "FR"}, f"e{k}", slots=["hero"]).decisions[0] for k in range(200)]
    again = [b.fill({"country": "FR"}, f"e{k}", slots=["hero"]).decisions[0] for k in range(200)]
    assert picks == again
    budgeted = [d for d in picks if d.explanation.startswith("cold-start; ")]
    assert budgeted and all(d.item == "n" for d in budgeted)


def test_the_arms_weights_stay_exact_through_the_budget() -> None:
    """A promoted slot with a holdout, and a launch: each arm's logged probability over the propensity is the
    arm's own weight (π_k / μ) when the arms drew, and 1 on the budget's draws, which no arm made."""
    from bandit.escalation.ladder import build_policy
    from bandit.policies.mixture import LadderPolicy
    from bandit.policies.tree import SNAPSHOT_KIND

    config = with_new_item()
    tree = build_policy(config, "hero", {"tier": "tree", "snapshot": {
        "kind": SNAPSHOT_KIND, "slot": "hero", "version": "tree-1", "config_version": config.version,
        "rules": [{"name": "leaf", "when": {"country": "FR"}, "items": ["b"]}], "default": ["a"]}})  # fmt: skip
    rules = build_policy(config, "hero", {"tier": "rules", "snapshot": None})
    hero = LadderPolicy("hero", tree, rules, 0.1)
    filler = PageFiller(config, {"hero": hero}, coldstart=ColdStart())
    filler.coldstart.launch(["n"])
    budget = arms_drew = 0
    for k in range(600):
        context = {"country": ("FR", "US")[k % 2]}
        decision = filler.fill(context, f"e{k}", slots=["hero"]).decisions[0]
        arms = decision.arms
        assert arms is not None and set(arms) == {"tree-1", config.version}
        assert 0.9 * arms["tree-1"] + 0.1 * arms[config.version] == pytest.approx(decision.propensity)
        if decision.explanation.startswith("cold-start; "):
            budget += 1
            assert arms["tree-1"] == arms[config.version] == decision.propensity
            continue
        arms_drew += 1
        index = decision.candidates.index(decision.item)
        own = {"tree-1": tree.pmf(context, decision.candidates)[0][index],
               config.version: rules.pmf(context, decision.candidates)[0][index]}  # fmt: skip
        mixed = 0.9 * own["tree-1"] + 0.1 * own[config.version]
        for name, p in own.items():
            assert arms[name] / decision.propensity == pytest.approx(p / mixed)
    assert budget > 50 and arms_drew > 300
