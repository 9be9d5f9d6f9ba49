"""The learning loop, free of storage: joined records in, serving policies and transitions out.

The service's learner process feeds it from the Redis stream and persists its
state; the simulator feeds it on simulated time.  Both therefore run exactly
the same training, gates, ramps and rollbacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bandit.config import EscalationSettings, StoreConfig
from bandit.evaluation import CrossFitRewardModel, learnable, policy_data
from bandit.ladder import SlotLadder, SlotState, build_policy
from bandit.ope import ESTIMATORS, lift
from bandit.policy import Policy
from bandit.tree import fit_tree

TREE_ROUNDS = 20_000  # rounds the tree is grown on; the reward model still learns from all of them
TREE_PASSES = 3  # passes of the reward model over the training window (1 pass under-fits the rarely shown items)


def train_tree(config: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Grow the slot's tree on ``records``: the rules plus the exceptions the reward model finds.

    The reward model (hurdle, 2-fold cross-fitted) learns from every round;
    the tree is grown on at most ``TREE_ROUNDS`` of them, evenly spread, which
    keeps a retrain to seconds without changing what a depth-4 tree can see.
    """
    settings = config.slot(slot).tree
    rounds = learnable(records)
    items = [i for i in config.catalog.ids if i not in config.constraints.exclude]
    if len(rounds) < 2 * settings.min_leaf:
        raise ValueError(f"too few rounds to grow a tree: {len(rounds)} < 2 × min_leaf ({settings.min_leaf})")
    meta: dict[str, Any] = {"rounds": len(rounds), "from_ts": rounds[0].get("ts"), "to_ts": rounds[-1].get("ts")}
    model = CrossFitRewardModel(config, rounds, folds=2, seed=seed, passes=TREE_PASSES)
    sample = np.linspace(0, len(rounds) - 1, min(len(rounds), TREE_ROUNDS)).astype(int)
    try:
        scores = np.array([model.predict(int(i), rounds[i]["context"], items) for i in sample])
    finally:
        model.close()
    meta["model"] = f"{model.kind}, {model.folds}-fold cross-fitted, {TREE_PASSES} passes"
    contexts = [rounds[i]["context"] for i in sample]
    chosen = [rounds[i]["chosen"] for i in sample]
    spread = float(np.std([float(r["reward"]) for r in rounds]))
    return fit_tree(config, slot, contexts, scores, items, settings, meta, chosen=chosen,
                    pessimism=settings.pessimism * spread)  # fmt: skip


def lift_gate(config: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]], challenger: Policy,
              incumbent: Policy, settings: EscalationSettings, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Off-policy lift of ``challenger`` over ``incumbent`` on ``records``, and whether it clears the gate."""
    rounds = learnable(records)
    estimator = ESTIMATORS[settings.estimator](confidence=settings.confidence)
    model = CrossFitRewardModel(config, rounds, folds=2, seed=seed) if estimator.needs_model else None
    try:
        result = lift(estimator, policy_data(rounds, challenger, model), policy_data(rounds, incumbent, model))
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
    }  # fmt: skip


class Learner:
    """One :class:`SlotLadder` per slot whose escalation is not ``off``.

    Parameters
    ----------
    config
        The store config.
    states
        Restored per-slot states (from storage), if any.
    trainer, gate
        Replaceable for tests; default to :func:`train_tree` and :func:`lift_gate`.
    """

    def __init__(
        self,
        config: StoreConfig,
        states: Mapping[str, SlotState] | None = None,
        trainer: Callable[..., dict[str, Any]] = train_tree,
        gate: Callable[..., dict[str, Any]] = lift_gate,
    ):
        self.config = config
        states = states or {}
        self.ladders: dict[str, SlotLadder] = {
            slot.name: SlotLadder(config, slot.name, slot.escalation, trainer, gate, states.get(slot.name))
            for slot in config.slots
            if slot.escalation.mode != "off" or slot.name in states
        }

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
        """Route joined records to their slots' ladders; returns every transition made."""
        by_slot: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            by_slot.setdefault(record["slot"], []).append(record)
        transitions = []
        for slot, ladder in self.ladders.items():
            transitions += ladder.observe(by_slot.get(slot, []), now)
        return transitions

    def policies(self, now: float | None = None) -> dict[str, Policy]:
        """Serving policy per slot (slots without a ladder are left to their rules)."""
        return {slot: ladder.policy() for slot, ladder in self.ladders.items()}

    def history(self) -> list[dict[str, Any]]:
        """Every slot's transitions, oldest first."""
        return sorted((h for ladder in self.ladders.values() for h in ladder.state.history), key=lambda h: h["at"])

    def states(self) -> dict[str, SlotState]:
        return {slot: ladder.state for slot, ladder in self.ladders.items()}


def make_learner(config: StoreConfig, seed: int = 0) -> Learner | None:
    """The learner a config asks for: None when every slot's escalation is ``off`` (rules only)."""
    if all(slot.escalation.mode == "off" for slot in config.slots):
        return None
    return Learner(
        config, trainer=functools.partial(train_tree, seed=seed), gate=functools.partial(lift_gate, seed=seed)
    )


__all__ = ["Learner", "build_policy", "lift_gate", "make_learner", "train_tree"]
