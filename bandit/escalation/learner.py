"""The store's learner, free of storage: joined records in, serving policies and transitions out.

The service's learner process feeds it from the Redis stream and persists its
state; the simulator feeds it on simulated time.  Both therefore run exactly
the same training, gates, ramps and rollbacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from bandit.config import SlotConfig, StoreConfig
from bandit.escalation.gate import lift_gate
from bandit.escalation.ladder import SlotLadder, build_policy
from bandit.escalation.state import SlotState
from bandit.learners.gradient import GradientLearner
from bandit.learners.tree import train_tree
from bandit.policies.base import Policy


def wants_gradient(slot: SlotConfig) -> bool:
    """The slot learns a gradient policy: it starts on that tier, or may climb to it."""
    return slot.tier == "gradient" or (slot.escalation.mode != "off" and "gradient" in slot.escalation.tiers)


def wants_ladder(slot: SlotConfig) -> bool:
    """The slot has a ladder to run: it escalates, or it starts on a learned tier."""
    return slot.escalation.mode != "off" or slot.tier != "rules"


def new_gradient_learner(config: StoreConfig, slot: str, state: SlotState | None, seed: int = 0) -> GradientLearner:
    """A gradient learner that starts from what serves: a serving gradient snapshot, else imitating the incumbent."""
    learner = GradientLearner(config, slot, seed)
    incumbent = state.incumbent if state is not None else {"tier": "rules", "snapshot": None}
    snapshot = incumbent.get("snapshot")
    if incumbent.get("tier") == "gradient" and isinstance(snapshot, Mapping):
        learner.adopt(snapshot)
    else:
        learner.imitate(build_policy(config, slot, incumbent))
    return learner


class Learner:
    """One :class:`SlotLadder` per slot that escalates or starts on a learned tier.

    Parameters
    ----------
    config
        The store config.
    states
        Restored per-slot states (from storage), if any.
    trainer, gate
        Replaceable for tests; default to :func:`train_tree` and :func:`lift_gate`.
    gradients
        Restored gradient learners per slot (from checkpoints); a slot that wants one and has none here gets a
        new one, warm-started from what it serves.
    seed
        Seeds the new gradient learners.
    slots
        Run only these slots' ladders (a runner of one slot's lease); default: every slot that has one.
    """

    def __init__(
        self,
        config: StoreConfig,
        states: Mapping[str, SlotState] | None = None,
        trainer: Callable[..., dict[str, Any]] = train_tree,
        gate: Callable[..., dict[str, Any]] = lift_gate,
        gradients: Mapping[str, GradientLearner] | None = None,
        seed: int = 0,
        slots: Collection[str] | None = None,
    ):
        self.config = config
        states = states or {}
        gradients = gradients or {}
        self.ladders: dict[str, SlotLadder] = {}
        for slot in config.slots:
            if (not wants_ladder(slot) and slot.name not in states) or (slots is not None and slot.name not in slots):
                continue
            state = states.get(slot.name)
            gradient = None
            if wants_gradient(slot):
                gradient = gradients.get(slot.name) or new_gradient_learner(config, slot.name, state, seed)
            self.ladders[slot.name] = SlotLadder(
                config, slot.name, slot.escalation, trainer, gate, state, gradient=gradient
            )
        self._started = False

    def start(self, now: float) -> list[dict[str, Any]]:
        """Put the slots configured to start on a learned tier on it (once; observe and policies do it too)."""
        if self._started:
            return []
        self._started = True
        transitions = []
        for slot, ladder in self.ladders.items():
            if self.config.slot(slot).tier == "gradient":
                transitions += ladder.start(now)
        return transitions

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
        """Route joined records to their slots' ladders; returns every transition made."""
        transitions = self.start(now)
        by_slot: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            by_slot.setdefault(record["slot"], []).append(record)
        for slot, ladder in self.ladders.items():
            transitions += ladder.observe(by_slot.get(slot, []), now)
        return transitions

    def policies(self, now: float | None = None) -> dict[str, Policy]:
        """Serving policy per slot (slots without a ladder are left to their rules)."""
        if now is not None:
            self.start(now)
        return {slot: ladder.policy() for slot, ladder in self.ladders.items()}

    def history(self) -> list[dict[str, Any]]:
        """Every slot's transitions, oldest first."""
        return sorted((h for ladder in self.ladders.values() for h in ladder.state.history), key=lambda h: h["at"])

    def states(self) -> dict[str, SlotState]:
        return {slot: ladder.state for slot, ladder in self.ladders.items()}

    def gradients(self) -> dict[str, GradientLearner]:
        """The gradient learner of each slot that has one."""
        return {slot: ladder.gradient for slot, ladder in self.ladders.items() if ladder.gradient is not None}


def make_learner(config: StoreConfig, seed: int = 0) -> Learner | None:
    """The learner a config asks for: None when every slot stays on its rules (escalation ``off``)."""
    if not any(wants_ladder(slot) for slot in config.slots):
        return None
    return Learner(
        config, trainer=functools.partial(train_tree, seed=seed), gate=functools.partial(lift_gate, seed=seed),
        seed=seed,
    )  # fmt: skip
