"""The contract every tier fulfils, and the registry that picks a tier by name.

A policy maps a context and the slot's eligible candidates to a full
probability vector (``pmf``).  ``choose`` wraps it: it validates, samples with
the event's own random number, and returns a :class:`~bandit.decision.Decision`
that carries the propensity of what was served.  Tiers implement ``_pmf`` only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from bandit.decision import Decision
from bandit.sampling import sample_index, uniform_for

POLICIES: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a tier selectable by its ``tier`` name in the config."""
    POLICIES[cls.tier] = cls
    return cls


def make_policy(tier: str, **kwargs: Any) -> Policy:
    try:
        cls = POLICIES[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; registered: {', '.join(sorted(POLICIES))}") from None
    return cls(**kwargs)


class Policy(ABC):
    """A slot's serving policy.

    Subclasses set ``tier`` and implement ``_pmf``; they must give every
    candidate a probability (none negative, summing to 1) and, with ``n ≥ 2``
    candidates, keep at least ``min(exploration / (n - 1), 1 / n)`` on every
    candidate but at most one (the favourite), so that every served item has
    a usable propensity.  The ``1 / n`` cap only bites when the exploration
    share is too large to give each of ``n`` items ``exploration / (n - 1)``,
    e.g. the even split used when no item is favoured.
    """

    tier: ClassVar[str]
    slot: str
    version: str

    def pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        """Probabilities aligned with ``candidates`` and an explanation.

        Raises
        ------
        ValueError
            When there are no candidates, or the policy breaks the contract.
        """
        if not candidates:
            raise ValueError(f"slot {self.slot!r}: no eligible candidates")
        probs, explanation = self._pmf(context, candidates)
        if len(probs) != len(candidates):
            raise ValueError(f"{type(self).__name__} returned {len(probs)} probabilities for {len(candidates)} items")
        total = math.fsum(probs)
        if not math.isclose(total, 1.0, abs_tol=1e-9) or min(probs) < 0.0:
            raise ValueError(f"{type(self).__name__} returned an invalid probability vector (sum {total})")
        return probs, explanation

    def choose(self, context: Mapping[str, Any], candidates: Sequence[str], u: float, position: int = 0) -> Decision:
        """Sample one item with the uniform number ``u`` in [0, 1).

        The explanation starts with ``explore;`` when the draw fell on an item
        the policy does not favour most.
        """
        probs, explanation = self.pmf(context, candidates)
        index = sample_index(probs, u)
        if probs[index] < max(probs):
            explanation = f"explore; {explanation}"
        return Decision(
            slot=self.slot,
            position=position,
            item=candidates[index],
            propensity=probs[index],
            candidates=tuple(candidates),
            pmf=tuple(probs),
            tier=self.tier,
            policy_version=self.version,
            explanation=explanation,
        )

    def decide(
        self, context: Mapping[str, Any], candidates: Sequence[str], event_id: str, position: int = 0
    ) -> Decision:
        """Choose for one page view: the random number comes from ``(event_id, slot)``, so it replays exactly."""
        return self.choose(context, candidates, uniform_for(event_id, self.slot), position)

    @abstractmethod
    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        """Return ``(probabilities aligned with candidates, explanation)``."""

    @abstractmethod
    def clone(self) -> Policy:
        """An untrained copy with the same settings."""


def greedy_with_exploration(candidates: Sequence[str], favourite: int, exploration: float) -> list[float]:
    """``1 - exploration`` on the favourite, the rest spread evenly over the others.

    >>> greedy_with_exploration(["a", "b", "c"], 1, 0.1)
    [0.05, 0.9, 0.05]
    >>> greedy_with_exploration(["a"], 0, 0.1)
    [1.0]
    """
    n = len(candidates)
    if n == 1:
        return [1.0]
    other = exploration / (n - 1)
    probs = [other] * n
    probs[favourite] = 1.0 - exploration
    return probs


PolicyFactory = Callable[..., Policy]
