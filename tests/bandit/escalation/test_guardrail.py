"""The guardrail's control after a promotion: every decision, importance-weighted, against the holdout alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit.config import EscalationSettings
from bandit.escalation.guardrail import ControlPool, control_breached, control_estimate

# Four equally common contexts, three items.  The new tier and the old agree in contexts 0-2 (they show item 0
# with 0.9) and differ in context 3, where the old tier shows item 1 and the new one item 2.
P_NEW = np.array([[0.9, 0.05, 0.05]] * 3 + [[0.05, 0.05, 0.9]])
P_OLD = np.array([[0.9, 0.05, 0.05]] * 3 + [[0.05, 0.9, 0.05]])
RATE = np.array([[0.3, 0.1, 0.1]] * 3 + [[0.1, 0.4, 0.05]])  # P(reward 1); the new tier is worse in context 3


def value(policy: np.ndarray) -> float:
    return float((policy * RATE).sum(axis=1).mean())


def decisions(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rewards, the logged mixture's propensities, and each tier's probability of the served item."""
    rng = np.random.default_rng(seed)
    context = rng.integers(0, 4, n)
    on_old = rng.random(n) < holdout
    draw = rng.random(n)[:, None]
    item = np.where(on_old, (draw > np.cumsum(P_OLD, 1)[context]).sum(1), (draw > np.cumsum(P_NEW, 1)[context]).sum(1))
    reward = (rng.random(n) < RATE[context, item]).astype(float)
    new, old = P_NEW[context, item], P_OLD[context, item]
    return reward, (1 - holdout) * new + holdout * old, new, old


def filled(n: int, holdout: float, seed: int, capacity: int = 1_000_000) -> ControlPool:
    pool = ControlPool("tree-1", "rules-1", capacity)
    for r, mu, a, b in zip(*decisions(n, holdout, seed), strict=True):
        pool.add(float(r), float(mu), {"tree-1": float(a), "rules-1": float(b)})
    return pool


def test_the_pool_is_a_ring_read_newest_first_and_skips_decisions_without_both_tiers() -> None:
    pool = ControlPool("new", "old", capacity=5)
    for k in range(7):
        pool.add(float(k), 0.5, {"new": 0.5, "old": 0.5})
    pool.add(99.0, 0.5, {"new": 0.5})  # logged before the holdout existed, or by another arm set: not usable
    pool.add(99.0, 0.5, None)
    assert pool.total == 7 and pool.n == 5
    assert pool.newest()[0].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0]
    copy = pool.copy()
    copy.add(7.0, 0.5, {"new": 0.5, "old": 0.5})
    assert pool.newest()[0][0] == 6.0 and copy.newest()[0][0] == 7.0


def test_both_tiers_are_estimated_without_bias_and_the_old_one_far_more_precisely_than_by_its_holdout() -> None:
    holdout, n = 0.05, 100_000
    estimate = control_estimate(filled(n, holdout, seed=1), window=10**9)
    assert estimate is not None and estimate["decisions"] == n
    true_new, true_old = value(P_NEW), value(P_OLD)
    assert true_new < true_old
    # within 4 standard errors of the truth (the pooled se bounds each mean's)
    assert abs(estimate["new"] - true_new) < 4 * estimate["se"]
    assert abs(estimate["old"] - true_old) < 4 * estimate["se"]
    # the tiers agree on 3 of 4 contexts: the old tier's effective sample is far above its holdout's 5,000
    assert estimate["ess_old"] > 4 * holdout * n
    # and the paired difference is more precise than the holdout's own mean alone would be
    holdout_alone_se = math.sqrt(true_old * (1 - true_old) / (holdout * n))
    assert estimate["se"] < 0.6 * holdout_alone_se


def test_over_many_seeds_the_estimates_centre_on_the_truth() -> None:
    errors = []
    for seed in range(40):
        estimate = control_estimate(filled(20_000, 0.05, seed), window=10**9)
        assert estimate is not None
        errors.append(estimate["old"] - value(P_OLD))
    assert abs(float(np.mean(errors))) < 3 * float(np.std(errors)) / math.sqrt(len(errors))


def test_the_window_holds_the_newest_decisions_worth_guardrail_window_of_the_old_tier() -> None:
    pool = filled(60_000, 0.05, seed=2)
    estimate = control_estimate(pool, window=5000)
    assert estimate is not None
    assert 5000 <= estimate["ess_old"] < 5000 * 1.01
    assert 5000 < estimate["decisions"] < 60_000
    # the new tier serves 95%: its own window of 5,000 effective rewards is far shorter, so a drop shows sooner
    assert 5000 <= estimate["decisions_new"] < 6000 < estimate["decisions"]


def test_a_worse_tier_is_rolled_back_a_tier_as_good_is_not() -> None:
    settings = EscalationSettings(guardrail_window=4000, guardrail_margin=0.0, guardrail_min_events=300)
    pool = ControlPool("tree-1", "rules-1", 200_000)
    rolled = None
    for k, (r, mu, a, b) in enumerate(zip(*decisions(200_000, 0.05, seed=3), strict=True)):
        pool.add(float(r), float(mu), {"tree-1": float(a), "rules-1": float(b)})
        if k % 50 == 49 and (details := control_breached(pool, settings)):
            rolled = (k, details)
            break
    assert rolled is not None, "the new tier is 25% worse: it goes back"
    k, details = rolled
    assert details["new_mean"] < details["old_mean"] and details["z"] > 2.3
    assert details["effective_old"] > 0.05 * details["decisions"]
    # the same tier on both arms (the holdout is a copy): never breached over as many decisions
    same = ControlPool("tree-1", "rules-1", 200_000)
    for j, (r, mu, a, _) in enumerate(zip(*decisions(200_000, 0.05, seed=4), strict=True)):
        same.add(float(r), float(mu), {"tree-1": float(a), "rules-1": float(a)})
        if j % 50 == 49:
            assert control_breached(same, settings) is None


@pytest.mark.parametrize("reward", [math.nan, math.inf])
def test_a_nan_never_rolls_back(reward: float) -> None:
    settings = EscalationSettings(guardrail_window=100, guardrail_min_events=10)
    pool = ControlPool("new", "old", 1000)
    for _ in range(200):
        pool.add(reward, 0.5, {"new": 0.5, "old": 0.5})
    assert control_breached(pool, settings) is None
