"""From joined records and a target policy to off-policy estimates, per slot.

The target policy is evaluated on each logged round's *own* eligible
candidates (what the slot could show at that moment), so its probabilities
are comparable with the logged ones.  The reward model for DM and DR is any
:class:`RewardModel`; the library's is the cross-fitted
:class:`bandit.learners.reward_model.CrossFitRewardModel`, where each round
is scored by a model that never saw it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bandit.ope.estimators import Estimate, Estimator, Lift, OffPolicyData, lift
from bandit.policies.base import Policy


class RewardModel(Protocol):
    """``q̂(x, a)`` for the items of logged round ``i`` (a cross-fitted model scores round ``i`` out of fold)."""

    def predict(self, i: int, context: Mapping[str, Any], candidates: Sequence[str]) -> list[float]: ...


def policy_data(
    records: Sequence[Mapping[str, Any]],
    policy: Policy | None,
    reward_model: RewardModel | None = None,
) -> OffPolicyData:
    """Per-round arrays for evaluating ``policy`` (``None``: the logging policy itself) on ``records``."""
    n = len(records)
    reward = np.empty(n)
    propensity = np.empty(n)
    target = np.empty(n)
    q_chosen = np.empty(n) if reward_model else None
    q_target = np.empty(n) if reward_model else None
    has_pmf = all("pmf" in r and r["pmf"] is not None for r in records)
    unsupported = np.zeros(n) if has_pmf else None
    for i, record in enumerate(records):
        candidates = record["candidates"]
        chosen = candidates.index(record["chosen"])
        reward[i] = float(record["reward"])
        propensity[i] = float(record["propensity"])
        if policy is None:
            if not has_pmf:
                raise ValueError("evaluating the logging policy needs the full pmf in every record")
            probs = [float(p) for p in record["pmf"]]
        else:
            probs, _ = policy.pmf(record["context"], candidates)
        target[i] = probs[chosen]
        if unsupported is not None:
            unsupported[i] = sum(p for p, logged in zip(probs, record["pmf"], strict=True) if logged <= 0)
        if reward_model is not None:
            assert q_chosen is not None and q_target is not None
            q = reward_model.predict(i, record["context"], candidates)
            q_chosen[i] = q[chosen]
            q_target[i] = float(np.dot(probs, q))
    return OffPolicyData(reward, propensity, target, q_chosen, q_target, unsupported)


@dataclass(frozen=True)
class SlotReport:
    """Everything ``storefront evaluate`` prints for one slot."""

    slot: str
    n: int
    logged_mean: float
    estimates: list[Estimate]
    lifts: list[Lift]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "n": self.n,
            "logged_mean": round(self.logged_mean, 10),
            "estimates": [e.to_dict() for e in self.estimates],
            "lift_vs_logged": [x.to_dict() for x in self.lifts],
        }


def evaluate_slot(
    slot: str,
    records: Sequence[Mapping[str, Any]],
    policy: Policy,
    reward_model: RewardModel | None,
    estimators: Sequence[Estimator],
) -> SlotReport:
    """Estimate ``policy``'s value on one slot's records, and its lift over the logging policy."""
    target = policy_data(records, policy, reward_model)
    estimates = [e.estimate(target) for e in estimators]
    lifts: list[Lift] = []
    if all("pmf" in r and r["pmf"] is not None for r in records):
        logged = policy_data(records, None, reward_model)
        lifts = [lift(e, target, logged) for e in estimators]
    return SlotReport(slot, len(records), float(np.mean(target.reward)), estimates, lifts)
