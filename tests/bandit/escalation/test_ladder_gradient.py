"""The gradient rung on the ladder: proposed when ready, gated, ramped, promoted; then it keeps learning."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bandit.config import EscalationSettings, StoreConfig
from bandit.escalation.ladder import SlotLadder
from bandit.escalation.learner import Learner, new_gradient_learner
from bandit.escalation.state import SlotState
from bandit.policies.mixture import probe_pmf
from tests.bandit.escalation.test_ladder import CONFIG, SNAPSHOT, FakeGate, feed, kinds, traffic, trainer
from tests.bandit.learners.test_gradient import served_kl

SETTINGS = EscalationSettings(
    mode="auto",
    tiers=("gradient",),
    min_events=200,
    retrain_every=600,
    ramp=(0.1, 1.0),
    ramp_events=300,
    holdout=0.1,
    guardrail_margin=0.1,
    guardrail_min_events=60,
    guardrail_window=400,
    canary=0.0,
)  # fmt: skip  (canary 0: the pure-shadow path; the canary's tests set it)


def config(**gradient: Any) -> StoreConfig:
    settings = {"batch": 100, "min_events": 500, **gradient}
    slots = tuple(replace(s, escalation=SETTINGS, gradient=replace(s.gradient, **settings)) for s in CONFIG.slots)
    return replace(CONFIG, slots=slots)


def gradient_ladder(
    passed: bool = True, settings: EscalationSettings = SETTINGS, **gradient: Any
) -> tuple[SlotLadder, FakeGate]:
    cfg = config(**gradient)
    gate = FakeGate(passed)
    learner = new_gradient_learner(cfg, "hero", None)
    return SlotLadder(cfg, "hero", settings, trainer, gate, gradient=learner), gate


def reward_for(item: str) -> float:
    return 1.0 if item == "c" else 0.0  # the rules never favour c; the gradient policy finds it


def test_the_gradient_challenger_waits_until_it_has_learned_enough() -> None:
    lad, _ = gradient_ladder(min_events=5000)
    transitions = feed(lad, 700, reward_of=lambda d: reward_for(d.item))
    assert kinds(transitions) == ["train_skipped"]
    assert "has learned from 600 of the 5,000 records" in transitions[0]["reason"]
    assert lad.state.stage == "incumbent"


def noisy_rewards(rates: dict[str, float]) -> Any:
    """Rewards of 1 with each item's rate, drawn from a fixed generator (a test that cannot flake)."""
    rng = np.random.default_rng(7)
    return lambda decision: float(rng.random() < rates.get(decision.item, 0.05))


def test_gradient_is_proposed_gated_ramped_promoted_and_then_keeps_learning() -> None:
    lad, _ = gradient_ladder(kl_limit=0.02)
    transitions = feed(lad, 6000, reward_of=noisy_rewards({"c": 0.3}))
    assert kinds(transitions)[:4] == ["trained", "ramp", "ramp", "promoted"], kinds(transitions)
    trained, promoted = transitions[0], transitions[3]
    assert trained["reason"].startswith("the gradient policy's snapshot is the challenger")
    assert lad.state.incumbent["tier"] == "gradient" and lad.state.previous == {"tier": "rules", "snapshot": None}
    # learning does not stop: it goes on serving what it learns, one trust-region step at a time
    published = [t for t in transitions[4:] if t["transition"] == "published"]
    assert published, kinds(transitions)
    assert lad.state.incumbent["snapshot"]["version"] == published[-1]["version"] != trained["version"]
    assert all(t["kl"] >= 0.02 and t["at"] > promoted["at"] for t in published)
    policy = lad.policy()
    assert policy.primary.tier == "gradient" and policy.secondary.tier == "rules" and policy.share == 0.1
    probs, _ = policy.primary.pmf({"country": "US", "device": "quest"}, list(CONFIG.catalog.ids))
    assert max(probs) == probs[list(CONFIG.catalog.ids).index("c")] > 0.9
    # every published step serves under one guardrail arm, judged against the rules' holdout
    assert "gradient" in lad.arms and lad.arms["gradient"].total > 4000


def test_a_promoted_gradient_policy_that_earns_less_is_rolled_back_to_its_holdout() -> None:
    lad, _ = gradient_ladder()
    feed(lad, 2400, reward_of=lambda d: reward_for(d.item))
    assert lad.state.stage == "promoted" and lad.state.incumbent["tier"] == "gradient"
    # the shoppers turn against what it learned to show (c), not against what the rules show
    transitions = feed(lad, 4000, start=2400, reward_of=lambda d: 0.1 if d.item == "c" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert rollback["incumbent"] == "rules" and rollback["stage"] == "incumbent"
    # its recent reward against the rules', whose longer window still holds rewards from before the turn
    assert rollback["new_mean"] < 0.2 < rollback["old_mean"] and rollback["at"] < 2400 + 1000, rollback
    assert rollback["decisions_new"] < rollback["decisions"]
    assert rollback["effective_old"] > 0.1 * rollback["decisions"], rollback  # more of the rules than their holdout
    assert lad.gradient is not None and lad.gradient.learned > 6000  # it learns on, in shadow


def test_a_slot_configured_to_start_on_gradient_serves_its_imitation_of_the_rules_at_once() -> None:
    cfg = config()
    slots = tuple(replace(s, tier="gradient") if s.name == "hero" else s for s in cfg.slots)
    cfg = replace(cfg, slots=slots)
    learner = Learner(cfg, trainer=trainer, gate=FakeGate(True))
    policies = learner.policies(now=0.0)
    assert policies["hero"].tier == "gradient"
    (started,) = [h for h in learner.history() if h["transition"] == "started"]
    assert started["slot"] == "hero" and learner.ladders["hero"].state.incumbent["tier"] == "gradient"
    assert learner.start(1.0) == []  # once


@pytest.mark.parametrize("tiers", [("tree",), ()])
def test_no_gradient_learner_unless_the_slot_climbs_to_it(tiers: tuple[str, ...]) -> None:
    cfg = config()
    slots = tuple(replace(s, escalation=replace(s.escalation, tiers=tiers)) for s in cfg.slots)
    learner = Learner(replace(cfg, slots=slots), trainer=trainer, gate=FakeGate(True))
    assert learner.gradients() == {}


class FirstPasses:
    """A gate that passes the first challenger (the tree) and rejects every later one."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> dict:
        self.calls += 1
        return {"passed": self.calls == 1, "reason": "fake gate", "n": len(args[2])}


def test_above_a_tree_the_gradient_policy_and_newer_trees_take_turns_as_challengers() -> None:
    settings = replace(SETTINGS, tiers=("tree", "gradient"))
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500))
                                      for s in CONFIG.slots))  # fmt: skip
    lad = SlotLadder(cfg, "hero", settings, trainer, FirstPasses(), gradient=new_gradient_learner(cfg, "hero", None))
    transitions = feed(lad, 9000, reward_of=lambda d: reward_for(d.item))
    attempts = [(t["transition"], str(t.get("version"))[:8]) for t in transitions
                if t["transition"] in ("trained", "no_change", "promoted")]  # fmt: skip
    assert attempts[:2] == [("trained", "tree-tes"), ("promoted", "None")], attempts
    after = [a for a in attempts[2:] if a[0] != "promoted"]
    # a gradient challenger (rejected), then a newer tree (here the same one: no_change), then the gradient again
    assert [a[1].split("-")[0] for a in after[:4]] == ["gradient", "tree", "gradient", "tree"], after


CANARY = replace(SETTINGS, canary=0.2, canary_events=1000)


def test_a_gradient_canary_serves_its_share_follows_its_snapshots_then_is_fixed_and_gated() -> None:
    lad, gate = gradient_ladder(settings=CANARY, kl_limit=0.02)
    transitions = feed(lad, 600, reward_of=noisy_rewards({"c": 0.3}))
    assert kinds(transitions)[0] == "canary" and lad.state.stage == "canary"
    assert "serves 20% of the traffic live" in transitions[0]["reason"]
    policy = lad.policy()
    assert policy.secondary is not None and policy.secondary.tier == "gradient" and policy.share == 0.2
    records = traffic(lad, 300, start=600, reward_of=noisy_rewards({"c": 0.3}))
    served = sum(r["tier"] == "gradient" for r in records) / len(records)
    assert 0.12 < served < 0.28  # its share of the pages, drawn per event
    for r in records:  # the logged propensity is the mixture's: what the item's chance really was
        probs = policy._pmf(r["context"], r["candidates"])[0]
        assert r["propensity"] == pytest.approx(probs[r["candidates"].index(r["chosen"])])
    # It learns from its own picks and serves each new trust-region step...
    transitions = feed(lad, 1400, start=600, reward_of=noisy_rewards({"c": 0.3}))
    moves = [t for t in transitions if t["transition"] == "published"]
    assert moves and all(t["reason"].endswith("the canary moves to it") for t in moves)
    fixed = transitions[kinds(transitions).index("trained")]
    assert fixed["version"] == moves[-1]["version"] and "fixed as the challenger" in fixed["reason"]
    # ...until canary_events: then the snapshot is fixed, and the gate judges it on events after that.
    assert fixed["at"] >= 1000 and lad.state.stage in ("shadow", "ramp", "promoted")
    after = [t for t in transitions if t["at"] > fixed["at"]]
    assert not [t for t in after if t["transition"] == "published" and "canary" in t["reason"]]
    assert gate.calls and gate.calls[0] == SETTINGS.min_events


def test_the_canary_keeps_serving_while_the_fixed_challenger_is_gated() -> None:
    lad, gate = gradient_ladder(passed=False, settings=replace(CANARY, min_events=2000), kl_limit=0.02)
    feed(lad, 1700, reward_of=noisy_rewards({"c": 0.3}))
    assert lad.state.stage == "shadow" and not gate.calls
    version = lad.state.challenger["snapshot"]["version"]
    policy = lad.policy()
    assert policy.secondary.tier == "gradient" and policy.secondary.version == version and policy.share == 0.2
    feed(lad, 2000, start=1700, reward_of=noisy_rewards({"c": 0.3}))
    assert gate.calls == [2000] and lad.state.stage == "incumbent" and lad.state.challenger is None  # rejected


class UndecidedGate:
    """A gate whose looks are all undecided (the interval straddles zero); it keeps what it judged."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float]] = []

    def __call__(self, config: Any, slot: str, records: list, challenger: Any, incumbent: Any, settings: Any) -> dict:
        self.calls.append((challenger.version, len(records), settings.confidence))
        return {"passed": False, "reason": "[-5%, +20%]", "relative_lift_low": -0.05, "relative_lift_high": 0.2}


def test_an_undecided_look_at_a_gradient_challenger_judges_the_learners_newest_snapshot_next() -> None:
    settings = replace(CANARY, min_events=200, max_events=800, confidence=0.95)  # looks at 200, 400, 800
    gate = UndecidedGate()
    cfg = config(kl_limit=0.01, optimism=0.0)  # (a learner that publishes a new snapshot between any two looks)
    lad = SlotLadder(cfg, "hero", settings, trainer, gate, gradient=new_gradient_learner(cfg, "hero", None))
    transitions, start = [], 0
    while "gate_wait" not in kinds(transitions):
        transitions += feed(lad, 50, start=start, reward_of=noisy_rewards({"c": 0.3}))
        start += 50
    # The first look was undecided: the learner's newest snapshot is the challenger now, and the canary serves it
    waited = transitions[kinds(transitions).index("gate_wait")]
    refixed = transitions[-1]
    assert refixed["transition"] == "trained" and refixed["version"] == lad.gradient.snapshot_["version"]
    assert "look 2 of 3, on the next 200 events" in waited["reason"]
    assert lad.state.stage == "shadow" and lad.state.challenger["snapshot"]["version"] == refixed["version"]
    assert lad.policy().secondary.version == refixed["version"]
    transitions += feed(lad, 1200, start=start, reward_of=noisy_rewards({"c": 0.3}))
    transitions = transitions[: kinds(transitions).index("rejected") + 1]
    fixed = [t["version"] for t in transitions if t["transition"] == "trained"]
    steps = [k for k in kinds(transitions) if k != "published"]
    assert steps[-6:] == ["trained", "gate_wait", "trained", "gate_wait", "trained", "rejected"], steps
    # Each look judged a different snapshot, on the events after it was fixed only, on the looks' schedule
    # (200, then 400 − 200, then 800 − 400 fresh events), each with its Bonferroni share of the error rate.
    assert [v for v, _, _ in gate.calls] == fixed[-3:] and len(set(fixed[-3:])) == 3
    assert [n for _, n, _ in gate.calls] == [200, 200, 400]
    assert [c for _, _, c in gate.calls] == pytest.approx([1 - 0.05 / 3] * 3)
    assert lad.state.last_gate is not None and lad.state.last_gate["look"] == 3  # rejected at the last look


def test_a_canary_earning_less_than_the_incumbent_is_dropped_by_the_guardrail() -> None:
    lad, _ = gradient_ladder(settings=CANARY)
    transitions = feed(lad, 3000, reward_of=lambda d: 0.0 if d.tier == "gradient" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert "canary's live reward is below 50% of the incumbent's" in rollback["reason"]  # canary_margin
    assert rollback["stage"] == "incumbent" and rollback["incumbent"] == "rules" and rollback["challenger"] is None
    assert lad.policy().secondary is None  # nothing of it is served any more


def test_a_learning_canary_may_trail_the_incumbent_by_its_margin_but_a_fixed_one_may_not() -> None:
    settings = replace(CANARY, max_events=1600)  # the gate waits (looks at 200, 400, 800, 1600 shadow events)
    lad, _ = gradient_ladder(passed=False, settings=settings)
    transitions = feed(lad, 1700, reward_of=lambda d: 0.7 if d.tier == "gradient" else 1.0)
    assert kinds(transitions)[0] == "canary" and transitions[0]["at"] == 550
    assert "rollback" not in kinds(transitions) and lad.state.stage == "shadow"  # 70% ≥ 1 − canary_margin
    transitions = feed(lad, 3000, start=1700, reward_of=lambda d: 0.7 if d.tier == "gradient" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert "below 90% of the incumbent's" in rollback["reason"]  # fixed: the guardrail's own margin (0.1)


def test_above_a_newly_promoted_tree_the_canary_starts_once_the_holdout_has_judged_the_tree() -> None:
    """The gradient policy has learned since day one: its canary does not wait ``retrain_every`` more events.
    (Here it was not ready when the tree was trained, so no canary learned beside the tree.)"""
    settings = replace(CANARY, tiers=("tree", "gradient"), holdout=0.5, retrain_every=2000)
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=2500))
                                      for s in CONFIG.slots))  # fmt: skip
    lad = SlotLadder(cfg, "hero", settings, trainer, FirstPasses(), gradient=new_gradient_learner(cfg, "hero", None))
    transitions = feed(lad, 4000, reward_of=lambda d: reward_for(d.item))
    promoted = transitions[kinds(transitions).index("promoted")]
    canary = transitions[kinds(transitions).index("canary")]
    assert canary["incumbent"].startswith("tree") and canary["at"] > promoted["at"]
    # both guardrail arms (the tree and its 50% holdout) hold guardrail_min_events (60) first, then it starts
    assert canary["at"] - promoted["at"] < 400 < settings.retrain_every, (promoted["at"], canary["at"])


def test_above_rules_no_tree_beats_the_gradient_policy_and_newer_trees_take_turns() -> None:
    settings = replace(SETTINGS, tiers=("tree", "gradient"))
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500))
                                      for s in CONFIG.slots))  # fmt: skip
    lad = SlotLadder(cfg, "hero", settings, trainer, FakeGate(False), gradient=new_gradient_learner(cfg, "hero", None))
    transitions = feed(lad, 6000, reward_of=lambda d: reward_for(d.item))
    attempts = [str(t.get("version")).split("-")[0] for t in transitions if t["transition"] in ("trained", "no_change")]
    assert "promoted" not in kinds(transitions) and lad.state.incumbent["tier"] == "rules"
    # the first tree is rejected: the gradient policy (ready) is next, then a newer tree, and so on
    assert attempts[:4] == ["tree", "gradient", "tree", "gradient"], kinds(transitions)


def rejecting(retrain_every: int, events: int) -> tuple[SlotLadder, list[tuple[str, str, float]]]:
    """A hero whose gate rejects every challenger, fed ``events``: its ladder and its (transition, tier, at)
    for each challenger trained and rejected (``at``: the feed's ticks, steps of 50 events)."""
    settings = replace(SETTINGS, tiers=("tree", "gradient"), retrain_every=retrain_every)
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500))
                                      for s in CONFIG.slots))  # fmt: skip
    lad = SlotLadder(cfg, "hero", settings, trainer, FakeGate(False), gradient=new_gradient_learner(cfg, "hero", None))
    transitions = feed(lad, events, reward_of=lambda d: reward_for(d.item))
    decided = [(t["transition"], str(t.get("version")).split("-")[0], t["at"]) for t in transitions
               if t["transition"] in ("trained", "rejected")]  # fmt: skip
    # trained tree, rejected, trained gradient, rejected, trained tree
    assert [d[:2] for d in decided[:5]] == [("trained", "tree"), ("rejected", "None"), ("trained", "gradient"),
                                           ("rejected", "None"), ("trained", "tree")], decided  # fmt: skip
    return lad, decided


def test_after_a_rejected_tree_the_gradient_policys_turn_starts_at_once_and_the_next_tree_waits() -> None:
    """A tree learns from a window of fresh records; the gradient policy learned from every record already."""
    retrain_every = 2000
    _, decided = rejecting(retrain_every, 9000)
    assert decided[2][2] - decided[1][2] <= 50, decided  # the gradient's turn: at once, not retrain_every later
    # the next tree: retrain_every fresh records after the last tree was trained, not after the gradient's rejection
    assert decided[4][2] - decided[0][2] >= retrain_every, decided
    assert decided[4][2] - decided[3][2] < retrain_every, decided


def test_after_a_rejected_gradient_policy_a_tree_older_than_retrain_every_is_retrained_at_once() -> None:
    """The gradient's turn (its shadow and gate) took longer than ``retrain_every``: the records a newer tree
    needs are there already, so the slot does not wait another ``retrain_every`` on a stale tree or its rules."""
    retrain_every = 300
    lad, decided = rejecting(retrain_every, 3000)
    assert decided[3][2] - decided[0][2] > retrain_every, decided  # the gradient's turn outlasted it
    assert decided[4][2] - decided[3][2] <= 50, decided  # so the newer tree comes at once
    assert lad.state.tree_trained_at > 0
    restored = SlotState.from_json(lad.state.to_json())  # the mark survives a learner restart
    assert restored.tree_trained_at == lad.state.tree_trained_at


def tree_then_canary(holdout: float = 0.2) -> SlotLadder:
    """A hero whose first tree is promoted (FirstPasses), with the gradient's canary at 30%: it starts beside the
    tree in shadow and goes on after the tree's promotion (still learning for the tests' 8,500 events)."""
    settings = replace(CANARY, tiers=("tree", "gradient"), holdout=holdout, canary=0.3, canary_events=9000)
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500))
                                      for s in CONFIG.slots))  # fmt: skip
    return SlotLadder(cfg, "hero", settings, trainer, FirstPasses(), gradient=new_gradient_learner(cfg, "hero", None))


def test_during_a_canary_the_promoted_tree_keeps_its_holdout_three_arms_logged_as_one_mixture() -> None:
    lad = tree_then_canary()
    transitions = feed(lad, 2500, reward_of=lambda d: reward_for(d.item))
    assert lad.state.stage == "canary" and lad.state.incumbent["tier"] == "tree", kinds(transitions)
    policy = lad.policy()
    assert policy.secondary.tier == "gradient" and policy.share == 0.3
    assert policy.holdout.tier == "rules" and policy.holdout_share == 0.2
    records = traffic(lad, 3000, start=2500)
    served = Counter(r["tier"] for r in records)
    assert 750 < served["gradient"] < 1050 and 480 < served["rules"] < 720, served  # 30% and 20% of 3,000
    for r in records[:50]:  # the logged propensity is the three arms' mixture (the tree's share probed)
        tree = probe_pmf(*(a.pmf(r["context"], r["candidates"])[0] for a in (policy.primary, policy.secondary)),
                         policy.probe)  # fmt: skip
        canary, rules = (a.pmf(r["context"], r["candidates"])[0] for a in (policy.secondary, policy.holdout))
        mixture = [0.5 * t + 0.3 * c + 0.2 * h for t, c, h in zip(tree, canary, rules, strict=True)]
        assert r["propensity"] == pytest.approx(mixture[r["candidates"].index(r["chosen"])])


def test_a_promoted_tree_that_breaks_its_guardrail_during_a_canary_goes_back_to_rules_and_the_canary_goes_on() -> None:
    lad = tree_then_canary()
    feed(lad, 2500, reward_of=lambda d: reward_for(d.item))
    assert lad.state.stage == "canary" and lad.state.incumbent["tier"] == "tree"
    canary = lad.state.challenger
    # now the tree's own pick (e for Japan; it agrees with the rules elsewhere) earns far less than the rules'
    transitions = feed(lad, 3000, start=2500, reward_of=lambda d: 0.0 if d.item == "e" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert rollback["reason"].startswith("live reward below the previous tier"), rollback
    assert rollback["reason"].endswith("the canary goes on beside it") and rollback["incumbent"] == "rules"
    assert lad.state.incumbent["tier"] == "rules" and lad.state.previous is None
    assert lad.state.stage == "canary" and lad.state.challenger["tier"] == canary["tier"] == "gradient"
    policy = lad.policy()
    assert policy.primary.tier == "rules" and policy.secondary.tier == "gradient" and policy.holdout is None
    # ...and it is judged against the rules now: a canary that then earns far less than them is dropped
    transitions = feed(lad, 3000, start=5500, reward_of=lambda d: 0.2 if d.tier == "gradient" else 1.0)
    dropped = transitions[kinds(transitions).index("rollback")]
    assert "canary's live reward is below 50% of the incumbent's" in dropped["reason"]
    assert dropped["challenger"] is None and dropped["incumbent"] == "rules" and dropped["stage"] == "incumbent"


def test_after_its_promotion_the_gradient_policy_moves_one_trust_region_step_at_a_time_from_what_was_gated() -> None:
    """While the fixed snapshot is gated and ramped the learner goes on learning, mostly from the incumbent's
    picks, and that drift was never judged: the first snapshot after the promotion is one trust-region step
    from the gated one, not the drifted learner (a KL of 0.40 here before the line search)."""
    lad, _ = gradient_ladder(settings=replace(CANARY, min_events=2000), kl_limit=0.02)
    reward = noisy_rewards({"c": 0.3, "d": 0.2})
    transitions: list[dict] = []
    first = 0
    while "promoted" not in kinds(transitions) and first < 8000:
        transitions += lad.observe(traffic(lad, 50, first, reward), now=float(first))
        first += 50
    gated = lad.state.incumbent["snapshot"]
    fixed = transitions[kinds(transitions).index("trained")]
    assert kinds(transitions)[-1] == "promoted" and gated["version"] == fixed["version"]
    assert lad.gradient is not None and lad.gradient.learned > fixed["n"] + 2500  # it learned on meanwhile
    while lad.state.incumbent["snapshot"]["version"] == gated["version"] and first < 12000:
        published = lad.observe(traffic(lad, 50, first, reward), now=float(first))
        first += 50
    step = lad.state.incumbent["snapshot"]
    assert published[-1]["transition"] == "published" and published[-1]["version"] == step["version"]
    assert published[-1]["kl"] <= 0.02 * 1.01
    # measured on what the workers serve: the gated snapshot's and the first step's probabilities
    contexts = [{"country": country, "device": "quest"} for country in ("US", "DE", "JP")]
    kl = served_kl(lad.config, "hero", gated, step, contexts)
    assert kl <= 0.02 * 1.01, kl


def tree_with_canary(passed: bool, **changes: Any) -> SlotLadder:
    """A hero on rules whose first tree (trained at 600 events) gets the gradient's canary (30%) beside it."""
    settings = replace(CANARY, tiers=("tree", "gradient"), canary=0.3, canary_events=3000, **changes)
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500, kl_limit=0.02))
                                      for s in CONFIG.slots))  # fmt: skip
    return SlotLadder(
        cfg, "hero", settings, trainer, FakeGate(passed), gradient=new_gradient_learner(cfg, "hero", None)
    )


def test_on_the_first_climb_the_gradient_canary_learns_beside_the_tree_in_shadow() -> None:
    lad = tree_with_canary(passed=False, min_events=2000)
    transitions = feed(lad, 700, reward_of=noisy_rewards({"c": 0.3}))
    assert kinds(transitions)[:2] == ["trained", "canary"], kinds(transitions)
    trained, canary = transitions[:2]
    assert trained["version"] == "tree-test" and canary["at"] == trained["at"] == 550
    assert "beside the tree challenger" in canary["reason"] and canary["challenger"] == "tree:tree-test"
    s = lad.state
    assert s.stage == "shadow" and s.challenger["tier"] == "tree" and s.canary["tier"] == "gradient"
    assert s.canary_since == 600
    policy = lad.policy()
    assert policy.primary.tier == "rules" and policy.secondary.tier == "gradient" and policy.share == 0.3
    assert policy.shadow.tier == "tree" and policy.probe == lad.settings.probe
    records = traffic(lad, 1000, start=700, reward_of=noisy_rewards({"c": 0.3}))
    served = Counter(r["tier"] for r in records)
    assert 240 < served["gradient"] < 360, served  # 30% of 1,000
    assert all(r["shadow"]["version"] == "tree-test" for r in records)  # the tree is still evaluated beside
    for r in records[:50]:  # the logged propensity is the mixture of the rules and the canary
        probs = policy._pmf(r["context"], r["candidates"])[0]
        assert r["propensity"] == pytest.approx(probs[r["candidates"].index(r["chosen"])])
    # it learns from its own picks, and serves each new trust-region step
    transitions = feed(lad, 1200, start=700, reward_of=noisy_rewards({"c": 0.3}))
    moves = [t for t in transitions if t["transition"] == "published"]
    assert moves and all(t["reason"].endswith("the canary beside the tree moves to it") for t in moves)
    assert lad.state.canary["snapshot"]["version"] == moves[-1]["version"] and lad.state.stage == "shadow"
    restored = SlotState.from_json(lad.state.to_json())  # a learner restart keeps it
    assert restored.canary == lad.state.canary and restored.canary_since == 600


def test_an_operators_rollback_during_the_trees_shadow_drops_the_tree_and_the_canary_goes_on_until_a_second() -> None:
    lad = tree_with_canary(passed=False, min_events=2000)
    feed(lad, 900, reward_of=noisy_rewards({"c": 0.3}))
    assert lad.state.stage == "shadow" and lad.state.canary is not None
    dropped = lad.act("rollback", now=900.0)
    assert (
        dropped["transition"] == "rollback" and lad.state.challenger is None and lad.state.incumbent["tier"] == "rules"
    )
    transitions = feed(lad, 50, start=900, reward_of=noisy_rewards({"c": 0.3}))
    assert kinds(transitions)[-1] == "canary" and lad.state.stage == "canary"  # the canary is the challenger now
    assert lad.state.challenger["tier"] == "gradient" and lad.state.canary is None
    lad.act("rollback", now=950.0)
    assert lad.state.stage == "incumbent" and lad.state.challenger is None and lad.policy().secondary is None


def test_after_the_trees_rejection_the_canary_beside_it_goes_on_its_events_counted_from_its_start() -> None:
    lad = tree_with_canary(passed=False)  # the gate looks at 200 shadow events
    transitions = feed(lad, 1000, reward_of=noisy_rewards({"c": 0.3}))
    steps = [t for t in transitions if t["transition"] != "published"]
    assert kinds(steps)[:4] == ["trained", "canary", "rejected", "canary"], kinds(steps)
    goes_on = steps[3]
    assert goes_on["reason"].startswith("the canary that learned beside the tree goes on as the gradient challenger")
    assert goes_on["at"] - steps[2]["at"] <= 50 and goes_on["incumbent"] == "rules"
    s = lad.state
    assert s.stage == "canary" and s.challenger["tier"] == "gradient" and s.canary is None
    assert s.challenger_since == 600
    transitions = feed(lad, 3000, start=1000, reward_of=noisy_rewards({"c": 0.3}))
    fixed = transitions[kinds(transitions).index("trained")]
    assert "fixed as the challenger" in fixed["reason"] and fixed["at"] == 3550  # 3,000 events after 600


def test_the_canary_pauses_while_the_tree_ramps_and_goes_on_against_the_promoted_tree_beside_its_holdout() -> None:
    lad = tree_with_canary(passed=True, holdout=0.2)
    feed(lad, 900, reward_of=lambda d: reward_for(d.item))
    assert lad.state.stage == "ramp" and lad.state.canary is not None
    policy = lad.policy()
    assert policy.secondary.tier == "tree" and policy.holdout is None and policy.shadow is None
    assert not [r for r in traffic(lad, 200, start=900) if r["tier"] == "gradient"]  # paused
    transitions = feed(lad, 1000, start=900, reward_of=lambda d: reward_for(d.item))
    promoted = transitions[kinds(transitions).index("promoted")]
    goes_on = transitions[kinds(transitions).index("canary")]
    assert goes_on["at"] - promoted["at"] <= 50 and goes_on["incumbent"] == "tree:tree-test", goes_on
    s = lad.state
    assert s.stage == "canary" and s.challenger["tier"] == "gradient" and s.challenger_since == 600
    policy = lad.policy()
    assert policy.primary.tier == "tree" and policy.secondary.tier == "gradient" and policy.share == 0.3
    assert policy.holdout.tier == "rules" and policy.holdout_share == 0.2


def test_a_canary_far_below_the_rules_beside_the_tree_is_dropped_and_the_tree_stays_in_shadow() -> None:
    lad = tree_with_canary(passed=False, min_events=4000)
    transitions = feed(lad, 3000, reward_of=lambda d: 0.0 if d.tier == "gradient" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert rollback["reason"] == (
        "the canary's live reward is below 50% of the incumbent's; the tree challenger stays in shadow"
    )
    s = lad.state
    assert s.canary is None and s.stage == "shadow" and s.challenger["tier"] == "tree"
    policy = lad.policy()
    assert policy.secondary is None and policy.shadow.tier == "tree"


def test_no_canary_beside_a_newer_tree_above_a_promoted_tree() -> None:
    """Only the first climb: above a tree, the gradient policy and newer trees take turns."""
    lad = tree_then_canary()
    feed(lad, 2500, reward_of=lambda d: reward_for(d.item))
    assert lad.state.incumbent["tier"] == "tree"
    lad.state.stage, lad.state.challenger, lad.state.previous = "promoted", None, None
    lad.state.next_train_at = lad.state.seen
    lad.state.history.append({"transition": "trained", "version": "gradient-x", "at": 2500.0})  # its turn was last
    lad.trainer = lambda config, slot, records: {**trainer(config, slot, records), "version": "tree-newer"}
    transitions = feed(lad, 50, start=2500, reward_of=lambda d: reward_for(d.item))
    assert lad.state.stage == "shadow" and lad.state.challenger["tier"] == "tree", kinds(transitions)
    assert lad.state.canary is None and "canary" not in kinds(transitions)


def test_with_escalation_turned_off_the_canary_beside_the_tree_stops_at_the_trees_verdict() -> None:
    lad = tree_with_canary(passed=False)
    feed(lad, 700, reward_of=noisy_rewards({"c": 0.3}))
    assert lad.state.canary is not None and lad.state.stage == "shadow"
    lad.settings = replace(lad.settings, mode="off")  # an operator's reload: no new challenger
    transitions = feed(lad, 300, start=700, reward_of=noisy_rewards({"c": 0.3}))
    steps = [t for t in transitions if t["transition"] != "published"]
    assert kinds(steps) == ["rejected", "rollback"] and "canary beside the tree stops" in steps[1]["reason"]
    assert lad.state.stage == "incumbent" and lad.state.canary is None and lad.state.challenger is None
    assert lad.policy().secondary is None


class Retrained:
    """A tree trainer whose window teaches it something new up to its ``last`` training (then the same tree)."""

    def __init__(self, last: int):
        self.calls, self.last = 0, last

    def __call__(self, config: Any, slot: str, records: list) -> dict:
        self.calls += 1
        n = min(self.calls, self.last)
        if n == 1:
            return dict(SNAPSHOT)
        leaf = {"name": f"leaf-{n}", "when": {"country": "US"}, "items": ["c"]}  # what the newer window shows
        return {**SNAPSHOT, "version": f"tree-test-{n}", "rules": [leaf, *SNAPSHOT["rules"][1:]]}


def tree_then_gradient(last_new_tree: int) -> tuple[SlotLadder, Retrained]:
    """A hero promoted to a tree, then to the gradient policy (every gate passes; no canary)."""
    settings = replace(SETTINGS, tiers=("tree", "gradient"))
    cfg = replace(CONFIG, slots=tuple(replace(s, escalation=settings, gradient=replace(s.gradient, batch=100,
                                                                                      min_events=500))
                                      for s in CONFIG.slots))  # fmt: skip
    retrained = Retrained(last_new_tree)
    gate = FakeGate(True)
    return SlotLadder(
        cfg, "hero", settings, retrained, gate, gradient=new_gradient_learner(cfg, "hero", None)
    ), retrained


def test_on_the_top_rung_the_tree_held_out_is_retrained_and_the_gradient_is_judged_against_the_newer_one() -> None:
    """A tree from before a launch or a drift would otherwise serve the holdout's share, and be the guardrail's
    control, for as long as the gradient policy serves."""
    lad, retrained = tree_then_gradient(last_new_tree=2)
    transitions = feed(lad, 2500, reward_of=lambda d: reward_for(d.item))
    promoted = [t for t in transitions if t["transition"] == "promoted"]
    assert [p["incumbent"].split(":")[0] for p in promoted] == ["tree", "gradient"], kinds(transitions)
    assert lad.state.previous == {"tier": "tree", "snapshot": SNAPSHOT} and retrained.calls == 1
    transitions = feed(lad, 1000, start=2500, reward_of=lambda d: reward_for(d.item))
    (refreshed,) = [t for t in transitions if t["transition"] == "holdout"]
    assert refreshed["at"] - promoted[1]["at"] >= SETTINGS.retrain_every, (refreshed, promoted[1])
    assert refreshed["version"] == "tree-test-2" and "(tree:tree-test) is retrained" in refreshed["reason"]
    assert refreshed["incumbent"].startswith("gradient") and lad.state.stage == "promoted"
    assert lad.state.previous is not None and lad.state.previous["snapshot"]["version"] == "tree-test-2"
    held_out = [r for r in traffic(lad, 600, start=3500) if r["tier"] == "tree"]
    assert 30 < len(held_out) < 90 and {r["policy_version"] for r in held_out} == {"tree-test-2"}  # its 10%
    # the guardrail's control restarted with it; the next trainings find the same tree, and nothing changes
    transitions = feed(lad, 900, start=3500, reward_of=lambda d: reward_for(d.item))
    assert retrained.calls == 4 and "holdout" not in kinds(transitions), kinds(transitions)  # at 3,550 and 4,150
    assert lad.state.previous["snapshot"]["version"] == "tree-test-2"
    assert lad.control is not None and lad.control.old.endswith("tree-test-2")
    assert 4400 - refreshed["at"] - 100 < lad.control.total <= 4400 - refreshed["at"], lad.control.total


def test_a_gradient_incumbent_below_its_retrained_holdout_goes_back_to_the_newer_tree() -> None:
    lad, _ = tree_then_gradient(last_new_tree=2)
    transitions = feed(lad, 4500, reward_of=lambda d: reward_for(d.item))
    assert "holdout" in kinds(transitions) and lad.state.incumbent["tier"] == "gradient"
    # the shoppers turn against what the gradient policy learned to show (c); the newer tree shows it in the US only
    transitions = feed(lad, 3000, start=4500, reward_of=lambda d: 0.1 if d.item == "c" else 1.0)
    rollback = transitions[kinds(transitions).index("rollback")]
    assert rollback["incumbent"] == "tree:tree-test-2" and rollback["stage"] == "incumbent", rollback
