"""The contract every registered policy fulfils, checked over random contexts and candidate sets.

Every tier in :mod:`bandit.tiers` is picked up here, whether or not its module
was imported before, and so is the ladder's served mixture
(:class:`bandit.policies.mixture.LadderPolicy`) in each of its shapes: a
ramp, a holdout, and a shadow with probe.  A new tier needs nothing here: its
``for_slot`` builds it, from ``EXAMPLE_SNAPSHOTS`` when the tier learns one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit import tiers
from bandit.config import ContextSchema, Item, SlotConfig, StoreConfig, load_config
from bandit.features import FeatureHashing
from bandit.policies.base import Policy
from bandit.policies.gradient import encode_snapshot, hashing_of
from bandit.policies.mixture import LadderPolicy
from bandit.policies.sampling import uniform_for
from bandit.policies.tree import SNAPSHOT_KIND

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "storefront.yaml"
CONFIG: StoreConfig = load_config(EXAMPLE)
TIERS = list(tiers.names())


def tree_snapshot(slot: SlotConfig) -> dict[str, Any]:
    """A learned tree that disagrees with the rules: Japan and PC-VR get other items, the default is reversed."""
    ids = list(CONFIG.catalog.ids)
    return {
        "kind": SNAPSHOT_KIND, "slot": slot.name, "version": f"tree-contract-{slot.name}",
        "rules": [{"name": "leaf-1", "when": {"country": "JP"}, "items": ids[-2:]},
                  {"name": "leaf-2", "when": {"device": {"in": ["pcvr", "psvr"]}}, "items": ids[3:6]}],
        "default": list(reversed(slot.default)) + [i for i in ids[:4] if i not in slot.default],
    }  # fmt: skip


def gradient_snapshot(slot: SlotConfig) -> dict[str, Any]:
    """Random weights on every context row × item bucket the example store uses: a policy with opinions everywhere."""
    hashing = FeatureHashing(CONFIG, hashing_of(slot))
    rng = np.random.default_rng(slot.position)
    rows = np.arange(hashing.n_context)[rng.random(hashing.n_context) < 0.05]
    cols = np.unique(np.concatenate([hashing.item_index(i) for i in CONFIG.catalog.ids]))
    cols = cols[cols < hashing.n_item]
    grid_rows, grid_cols = np.repeat(rows, len(cols)), np.tile(cols, len(rows))
    return encode_snapshot(CONFIG, slot.name, grid_rows, grid_cols, rng.normal(0, 1.5, grid_rows.size), n=0)


# A learned snapshot per tier that learns one (a tier without an entry is built from the config alone).
EXAMPLE_SNAPSHOTS: dict[str, Callable[[SlotConfig], dict[str, Any]]] = {
    "tree": tree_snapshot, "gradient": gradient_snapshot
}  # fmt: skip


def tier_policy(tier: str, slot: SlotConfig) -> Policy:
    snapshot = EXAMPLE_SNAPSHOTS[tier](slot) if tier in EXAMPLE_SNAPSHOTS else None
    return tiers.get(tier).policy_class().for_slot(CONFIG, slot, snapshot)


def _ramp(incumbent: str, challenger: str) -> Callable[[SlotConfig], Policy]:
    return lambda slot: LadderPolicy(slot.name, tier_policy(incumbent, slot), tier_policy(challenger, slot), 0.25)


def _holdout(incumbent: str, previous: str) -> Callable[[SlotConfig], Policy]:
    return lambda slot: LadderPolicy(slot.name, tier_policy(incumbent, slot), tier_policy(previous, slot), 0.05)


def _shadow_probe(incumbent: str, challenger: str) -> Callable[[SlotConfig], Policy]:
    return lambda slot: LadderPolicy(
        slot.name, tier_policy(incumbent, slot), shadow=tier_policy(challenger, slot), probe=PROBE
    )


def _canary_holdout(incumbent: str, canary: str, previous: str) -> Callable[[SlotConfig], Policy]:
    """A canary beside a promoted incumbent that keeps its holdout: three arms."""
    return lambda slot: LadderPolicy(
        slot.name, tier_policy(incumbent, slot), tier_policy(canary, slot), 0.5, shadow=tier_policy(canary, slot),
        probe=PROBE, holdout=tier_policy(previous, slot), holdout_share=0.05,
    )  # fmt: skip


PROBE = 0.5
# The ladder's mixture in each of its shapes, for every pair of a lower and a higher rung.
PAIRS = [(low, high) for i, low in enumerate(TIERS) for high in TIERS[i + 1 :]]
MIXTURES: dict[str, Callable[[SlotConfig], Policy]] = {}
for _low, _high in PAIRS:
    MIXTURES[f"mixture:ramp:{_low}->{_high}"] = _ramp(_low, _high)
    MIXTURES[f"mixture:holdout:{_high}+{_low}"] = _holdout(_high, _low)
    MIXTURES[f"mixture:shadow-probe:{_low}+{_high}"] = _shadow_probe(_low, _high)
MIXTURES["mixture:canary-holdout:tree+gradient+rules"] = _canary_holdout("tree", "gradient", "rules")
POLICIES = TIERS + list(MIXTURES)


def build(name: str, slot: SlotConfig) -> Policy:
    return MIXTURES[name](slot) if name in MIXTURES else tier_policy(name, slot)


def served_tiers(name: str) -> set[str]:
    """The tiers a decision of this policy may be logged with (a mixture logs the arm that served)."""
    return set(TIERS) if name in MIXTURES else {name}


def favourites(name: str) -> int:
    """How many items a policy favours: one per arm."""
    return 3 if name.startswith("mixture:canary-holdout") else 2 if name in MIXTURES else 1


def with_exploration(slot: SlotConfig, exploration: float) -> SlotConfig:
    return replace(slot, exploration=exploration)


# The example's slots, plus large exploration shares where the 1/n cap of the floor matters.
SLOTS = [*CONFIG.slots, *(with_exploration(CONFIG.slots[0], e) for e in (0.5, 0.9, 1.0))]
SLOT_IDS = [f"{s.name}@{s.exploration}" for s in SLOTS]


def random_context(rng: random.Random, schema: ContextSchema) -> dict[str, Any]:
    """A valid request context: each optional field present or left to its default."""
    raw: dict[str, Any] = {}
    for spec in schema.fields:
        if not spec.required and rng.random() < 0.3:
            continue
        if spec.kind == "category":
            raw[spec.name] = rng.choice(spec.values)
        elif spec.kind == "bool":
            raw[spec.name] = rng.random() < 0.5
        elif spec.kind == "hour":
            raw[spec.name] = rng.randrange(24)
        elif spec.kind == "day_of_week":
            raw[spec.name] = rng.choice(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
        elif spec.kind == "integer":
            raw[spec.name] = rng.randint(int(spec.min or 0), int(spec.max or 100))
        else:
            raw[spec.name] = rng.uniform(spec.min or 0.0, spec.max or 100.0)
    now = (
        datetime(2026, 1, 1, tzinfo=UTC)
        + (datetime(2026, 1, 8, tzinfo=UTC) - datetime(2026, 1, 1, tzinfo=UTC)) * rng.random()
    )
    context, problems = schema.normalise(raw, now=now)
    assert problems == []
    return context


def random_cases(seed: int, count: int = 300) -> list[tuple[dict[str, Any], list[str]]]:
    """(context, candidates) pairs; candidates are random subsets in random order, often tiny."""
    rng = random.Random(seed)
    ids = list(CONFIG.catalog.ids)
    cases = []
    for _ in range(count):
        size = rng.choice([1, 2, 3, rng.randint(1, len(ids))])
        cases.append((random_context(rng, CONFIG.context), rng.sample(ids, size)))
    return cases


CASES = random_cases(seed=20260101)


def test_every_tier_is_registered_with_its_own_policy_class():
    assert TIERS[0] == "rules"
    for tier in tiers.all_tiers():
        cls = tier.policy_class()
        assert cls.tier == tier.name
        assert cls.floor is not Policy.floor, f"{cls.__name__} must say what it promises (floor)"
    assert tiers.from_config() == ("rules", "gradient")
    assert tiers.served() == (*TIERS, "pin")


@pytest.mark.parametrize("slot", SLOTS, ids=SLOT_IDS)
@pytest.mark.parametrize("tier", POLICIES)
def test_the_floor_is_what_the_tier_is_configured_for(tier, slot):
    """The promise itself: the rules' exploration share, the gradient's min_exploration, the arms' mixture."""
    policy = build(tier, slot)
    n = 12
    rules = min(slot.exploration / (n - 1), 1 / n)
    expected = {"rules": rules, "tree": rules, "gradient": slot.gradient.min_exploration / n}
    if tier.startswith("mixture:canary-holdout:"):
        a, b, c = tier.split(":")[2].split("+")  # incumbent (probed), canary 50%, holdout 5%
        want = 0.45 * (1 - PROBE) * expected[a] + 0.5 * expected[b] + 0.05 * expected[c]
        assert policy.floor(n) == pytest.approx(want)
    elif tier.startswith("mixture:"):
        _, shape, arms = tier.split(":")
        a, b = arms.replace("->", "+").split("+")
        share = {"ramp": 0.25, "holdout": 0.05}.get(shape)
        want = (1 - PROBE) * expected[a] if share is None else (1 - share) * expected[a] + share * expected[b]
        assert policy.floor(n) == pytest.approx(want)
    else:
        assert policy.floor(n) == pytest.approx(expected[tier])


@pytest.mark.parametrize("slot", SLOTS, ids=SLOT_IDS)
@pytest.mark.parametrize("tier", POLICIES)
def test_pmf_is_a_full_probability_vector_with_the_exploration_floor(tier, slot):
    policy = build(tier, slot)
    for context, candidates in CASES:
        probs, explanation = policy.pmf(context, candidates)
        n = len(candidates)
        assert len(probs) == n
        assert all(isinstance(p, float) for p in probs)
        assert min(probs) >= 0.0
        assert abs(math.fsum(probs) - 1.0) <= 1e-9
        floor = policy.floor(n)
        below = [p for p in probs if p < floor - 1e-12]
        # Only a favourite may sit below (it does when the exploration share exceeds (n-1)/n); a mixture has two.
        assert len(below) <= favourites(tier), (context, candidates, probs, floor)
        assert isinstance(explanation, str) and explanation


@pytest.mark.parametrize("slot", SLOTS, ids=SLOT_IDS)
@pytest.mark.parametrize("tier", POLICIES)
def test_choose_serves_with_its_propensity_and_is_replayable(tier, slot):
    policy = build(tier, slot)
    for i, (context, candidates) in enumerate(CASES):
        event_id = f"contract-{i}"
        u = uniform_for(event_id, slot.name)
        decision = policy.choose(context, candidates, u, position=slot.position)
        probs, _ = policy.pmf(context, candidates)
        index = candidates.index(decision.item)
        assert decision.propensity > 0.0
        assert decision.propensity == probs[index] == decision.pmf[index]
        assert decision.candidates == tuple(candidates)
        assert decision.pmf == tuple(probs)
        assert (decision.slot, decision.position) == (slot.name, slot.position)
        assert decision.tier in served_tiers(tier)
        if tier not in MIXTURES:
            assert decision.policy_version == policy.version
        # The same event id and slot give the same decision, from this object and from a clone.
        assert policy.choose(context, candidates, uniform_for(event_id, slot.name), slot.position) == decision
        assert policy.clone().choose(context, candidates, u, position=slot.position) == decision


@pytest.mark.parametrize("tier", POLICIES)
def test_a_request_with_its_own_items_and_baseline_keeps_the_contract(tier):
    """Personalizer's ad-hoc actions and baselines: every tier and mixture ranks them, and stays itself."""
    slot = CONFIG.slots[0]
    policy = build(tier, slot)
    genre = next(spec for spec in CONFIG.catalog.features if spec.kind == "category")
    own = {f"own-{k}": Item(f"own-{k}", "newcomer", {genre.name: value}) for k, value in enumerate(genre.values)}
    for i, (context, candidates) in enumerate(CASES[:60]):
        pool = [*candidates, *own]
        scoped = policy.with_request(baseline=pool[-1], items=own)
        probs, _ = scoped.pmf(context, pool)
        assert min(probs) > 0.0 and abs(math.fsum(probs) - 1.0) <= 1e-9
        decision = scoped.decide(context, pool, f"own-{i}", slot.position)
        assert decision.propensity == probs[pool.index(decision.item)]
        assert policy.pmf(context, candidates) == build(tier, slot).pmf(context, candidates)  # unchanged


@pytest.mark.parametrize("tier", POLICIES)
def test_clone_is_a_fresh_policy_with_the_same_settings(tier):
    policy = build(tier, CONFIG.slots[0])
    clone = policy.clone()
    assert clone is not policy
    assert type(clone) is type(policy)
    assert (clone.tier, clone.slot, clone.version) == (policy.tier, policy.slot, policy.version)
    for context, candidates in CASES[:50]:
        assert clone.pmf(context, candidates) == policy.pmf(context, candidates)


@pytest.mark.parametrize("tier", POLICIES)
def test_no_candidates_is_refused(tier):
    with pytest.raises(ValueError, match="no eligible candidates"):
        build(tier, CONFIG.slots[0]).pmf({}, [])


# Critical values of the chi-square distribution at 0.999 for the degrees of freedom used below
# (scipy.stats.chi2.ppf(0.999, df)), for when scipy is not installed.
_CHI2_999 = {3: 16.266236196238, 5: 20.515005652432873, 7: 24.321886347856854}


def chi2_critical(df: int) -> float:
    try:
        from scipy.stats import chi2
    except ImportError:  # pragma: no cover - scipy is an optional test helper
        return _CHI2_999[df]
    return float(chi2.ppf(0.999, df))


def test_hardcoded_critical_values_match_scipy():
    chi2 = pytest.importorskip("scipy.stats").chi2
    for df, value in _CHI2_999.items():
        assert chi2.ppf(0.999, df) == pytest.approx(value, rel=1e-9)


# (slot index, exploration override, context, candidates): a skewed and a flat pmf, several sizes.
FREQUENCY_CASES = [
    (0, None, {"country": "JP", "device": "quest"}, ["beat-saber", "synth-riders", "moss", "superhot"]),
    (2, 0.6, {"device": "psvr", "age": 20}, ["moss", "pavlov", "red-matter", "contractors", "audica", "golf-plus"]),
    (1, None, {"device": "quest", "returning": False}, ["audica", "fitxr", "moss", "onward", "msfs", "superhot",
                                                         "supernatural", "population-one"]),
]  # fmt: skip


@pytest.mark.parametrize(("slot_index", "exploration", "context", "candidates"), FREQUENCY_CASES)
@pytest.mark.parametrize("tier", POLICIES)
def test_observed_frequencies_match_the_pmf(tier, slot_index, exploration, context, candidates):
    """Chi-square goodness of fit over 20,000 draws with fixed, distinct event ids (so it cannot flake)."""
    slot = CONFIG.slots[slot_index]
    if exploration is not None:
        slot = with_exploration(slot, exploration)
    policy = build(tier, slot)
    draws = 20_000
    counts = np.zeros(len(candidates))
    for i in range(draws):
        decision = policy.choose(context, candidates, uniform_for(f"freq-{i}", slot.name))
        counts[candidates.index(decision.item)] += 1
    expected = np.asarray(policy.pmf(context, candidates)[0]) * draws
    assert expected.min() >= 5  # the chi-square approximation needs it
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    df = len(candidates) - 1
    assert statistic < chi2_critical(df), (counts, expected)
