"""The store's learner, free of storage: joined records in, serving policies and transitions out.

The service's learner process feeds it from the Redis stream and persists its
state; the simulator feeds it on simulated time.  Both therefore run exactly
the same training, gates, ramps and rollbacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bandit.config import StoreConfig
from bandit.escalation.gate import lift_gate
from bandit.escalation.ladder import SlotLadder
from bandit.escalation.state import SlotState
from bandit.learners.tree import train_tree
from bandit.policies.base import Policy


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
