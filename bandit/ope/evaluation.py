"""From joined records and a target policy to off-policy estimates, per slot.

The target policy is evaluated on each logged round's *own* eligible
candidates (what the slot could show at that moment), so its probabilities
are comparable with the logged ones.  The reward model for DM and DR is any
:class:`RewardModel`; the library's is the cross-fitted
:class:`bandit.learners.reward_model.CrossFitRewardModel`, where each round
is scored by a model that never saw it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from bandit.ope.estimators import Estimate, Estimator, Lift, OffPolicyData, lift
from bandit.policies.base import Policy


class RewardModel(Protocol):
    """``q̂(x, a)`` for the items of logged round ``i`` (a cross-fitted model scores round ``i`` out of fold)."""

    def predict(self, i: int, context: Mapping[str, Any], candidates: Sequence[str]) -> list[float]: ...


RoundScorer = Callable[[int, Sequence[str]], Sequence[float]]


def round_scores(reward_model: RewardModel, records: Sequence[Mapping[str, Any]]) -> RoundScorer:
    """``q̂`` of round ``i``'s candidates as ``scores(i, candidates)``: all rounds at once when the model can
    (``predict_rounds``, as :class:`~bandit.learners.reward_model.CrossFitRewardModel` does), else round by round."""
    bulk = getattr(reward_model, "predict_rounds", None)
    if bulk is not None:
        return cast(RoundScorer, bulk(records))
    return lambda i, candidates: reward_model.predict(i, records[i]["context"], candidates)


def policy_data(
    records: Sequence[Mapping[str, Any]],
    policy: Policy | None,
    reward_model: RewardModel | None = None,
    scores: RoundScorer | None = None,
) -> OffPolicyData:
    """Per-round arrays for evaluating ``policy`` (``None``: the logging policy itself) on ``records``.

    ``scores`` (from :func:`round_scores`) saves scoring the rounds again when the same records are evaluated
    for two policies."""
    n = len(records)
    reward = np.empty(n)
    propensity = np.empty(n)
    target = np.empty(n)
    if reward_model is not None and scores is None:
        scores = round_scores(reward_model, records)
    q_chosen = np.empty(n) if scores is not None else None
    q_target = np.empty(n) if scores is not None else None
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
            probs = record["pmf"]
        else:
            probs, _ = policy.pmf(record["context"], candidates)
        target[i] = probs[chosen]
        if unsupported is not None and min(record["pmf"]) <= 0:
            unsupported[i] = sum(p for p, logged in zip(probs, record["pmf"], strict=True) if logged <= 0)
        if scores is not None:
            assert q_chosen is not None and q_target is not None
            q = scores(i, candidates)
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
    # The per-round arrays behind the estimates (the target policy's, and the logging policy's when every record
    # has its pmf), for callers that show more than the estimates.
    target: OffPolicyData | None = field(default=None, repr=False, compare=False)
    logged: OffPolicyData | None = field(default=None, repr=False, compare=False)

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
    scores = round_scores(reward_model, records) if reward_model is not None else None
    target = policy_data(records, policy, reward_model, scores)
    estimates = [e.estimate(target) for e in estimators]
    lifts: list[Lift] = []
    logged = None
    if all("pmf" in r and r["pmf"] is not None for r in records):
        logged = policy_data(records, None, reward_model, scores)
        lifts = [lift(e, target, logged) for e in estimators]
    return SlotReport(slot, len(records), float(np.mean(target.reward)), estimates, lifts, target, logged)
