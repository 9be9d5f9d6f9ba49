"""The gate a challenger passes to leave shadow: the lower confidence bound of its off-policy lift.

The lift of the challenger over the incumbent is estimated on the records
logged since the challenger was trained (never the data it was trained on),
with the slot's estimator (DR by default, its reward model cross-fitted); the
gate passes when the lower bound, relative to the incumbent's value, is at
least ``min_lift``.  Formulas and references: :mod:`bandit.ope.estimators`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandit.config import EscalationSettings, StoreConfig
from bandit.eventlog.events import learnable
from bandit.learners.reward_model import CrossFitRewardModel
from bandit.ope.estimators import ESTIMATORS, lift
from bandit.ope.evaluation import policy_data, round_scores
from bandit.policies.base import Policy


def lift_gate(config: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]], challenger: Policy,
              incumbent: Policy, settings: EscalationSettings, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Off-policy lift of ``challenger`` over ``incumbent`` on ``records``, and whether it clears the gate."""
    rounds = learnable(records)
    estimator = ESTIMATORS[settings.estimator](confidence=settings.confidence)
    model = CrossFitRewardModel(config, rounds, folds=2, seed=seed) if estimator.needs_model else None
    try:
        scores = round_scores(model, rounds) if model is not None else None
        target, base = policy_data(rounds, challenger, model, scores), policy_data(rounds, incumbent, model, scores)
        result = lift(estimator, target, base)
        # The diagnostics beside the lift, for the learning-health dashboard: how far to trust it.
        target_estimate, base_estimate = estimator.estimate(target), estimator.estimate(base)
    finally:
        if model is not None:
            model.close()
    scale = abs(result.incumbent) or 1.0
    relative_low, relative_high = result.ci_low / scale, result.ci_high / scale
    passed = relative_low >= settings.min_lift
    reason = (
        f"lift {result.lift / scale:+.2%} [{relative_low:+.2%}, {relative_high:+.2%}] of the incumbent's value; "
        f"lower bound {'≥' if passed else '<'} min_lift {settings.min_lift:+.2%} "
        f"({estimator.name}, n={result.n}, {settings.confidence:.1%} interval)"
    )
    return {
        "passed": passed, "reason": reason, "estimator": estimator.name, "n": result.n,
        "challenger_value": round(result.target, 6), "incumbent_value": round(result.incumbent, 6),
        "lift": round(result.lift, 6), "lift_low": round(result.ci_low, 6), "lift_high": round(result.ci_high, 6),
        "relative_lift_low": round(relative_low, 6), "relative_lift_high": round(relative_high, 6),
        "confidence": round(settings.confidence, 6),
        "challenger_low": round(target_estimate.ci_low, 6), "challenger_high": round(target_estimate.ci_high, 6),
        "incumbent_low": round(base_estimate.ci_low, 6), "incumbent_high": round(base_estimate.ci_high, 6),
        "ess": round(target_estimate.ess, 3), "max_weight": round(target_estimate.max_weight, 6),
        "unsupported_mass": None if target_estimate.unsupported_mass is None
        else round(target_estimate.unsupported_mass, 6),
    }  # fmt: skip
