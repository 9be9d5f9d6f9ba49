"""The contract every policy fulfils, and the value object it returns.

A policy maps a context and the slot's eligible candidates to a full
probability vector (``pmf``).  ``choose`` wraps it: it validates, samples with
the event's own random number, and returns a :class:`Decision` that carries
the propensity of what was served.  Policies implement ``_pmf`` only.

A *tier* (a rung of the ladder, see :mod:`bandit.tiers`) is a
:class:`TierPolicy`: it can also be built for a slot from the config and a
learned snapshot.  Baselines (uniform, the VW peer, the simulator's oracle)
and the ladder's served mixture are policies without being tiers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bandit.config import Item, SlotConfig, StoreConfig

from bandit.policies.sampling import sample_index, uniform_for


def arm_key(tier: str, version: str) -> str:
    """The guardrail's name for a serving arm: ``gradient`` for the gradient tier (its trust-region snapshots are
    one lineage, judged as one arm), otherwise the exact policy version."""
    return "gradient" if tier == "gradient" else str(version)


@dataclass(frozen=True, slots=True)
class Decision:
    """What was served in one slot and with what probability.

    ``pmf[i]`` is the probability the serving policy gave ``candidates[i]``;
    ``propensity`` is ``pmf`` at the chosen item, always > 0.  Both are
    conditional on the items that slots earlier on the page already took.

    Attributes
    ----------
    slot, position
        Slot name and its place in page order (0 is filled first).
    item
        The chosen item id.
    propensity
        Probability of ``item`` under the serving policy.
    candidates, pmf
        The eligible candidates and the full probability vector over them.
    tier
        ``rules``, ``tree``, ``gradient`` or ``pin``.
    policy_version
        Identifies the exact policy (config version for rules, snapshot id for models).
    explanation
        Why: the rule matched (``rule:<name>``, ``default``), the tree path.
    shadow
        A challenger evaluated beside the served policy and not served:
        ``{"version", "tier", "pmf"}`` with ``pmf`` aligned with ``candidates``.
    arms
        When the slot's traffic is split between arms (a ramp, a canary, a
        holdout): each arm's probability of ``item`` had it served the
        decision alone, by the arm's guardrail name (:func:`arm_key`).  With
        ``propensity`` it weights the reward for an off-policy estimate of
        every arm from every decision (the guardrail's control).
    """

    slot: str
    position: int
    item: str
    propensity: float
    candidates: tuple[str, ...]
    pmf: tuple[float, ...]
    tier: str
    policy_version: str
    explanation: str
    shadow: dict[str, Any] | None = None
    arms: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "slot": self.slot,
            "position": self.position,
            "item": self.item,
            "propensity": self.propensity,
            "candidates": list(self.candidates),
            "pmf": list(self.pmf),
            "tier": self.tier,
            "policy_version": self.policy_version,
            "explanation": self.explanation,
        }
        if self.shadow is not None:
            out["shadow"] = self.shadow
        if self.arms is not None:
            out["arms"] = self.arms
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            slot=data["slot"],
            position=int(data["position"]),
            item=data["item"],
            propensity=float(data["propensity"]),
            candidates=tuple(data["candidates"]),
            pmf=tuple(float(p) for p in data["pmf"]),
            tier=data["tier"],
            policy_version=data["policy_version"],
            explanation=data["explanation"],
            shadow=data.get("shadow"),
            arms=data.get("arms"),
        )


class Policy(ABC):
    """A slot's serving policy.

    Subclasses set ``tier`` and implement ``_pmf``; they must give every
    candidate a probability (none negative, summing to 1) and, with ``n ≥ 2``
    candidates, keep at least :meth:`floor` on every candidate but their
    favourite, so that every served item has a usable propensity.
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

    def floor(self, n: int) -> float:
        """The least probability promised to every candidate but the favourite, among ``n`` (0: no promise).

        A tier overrides it: the rules promise ``min(exploration / (n - 1), 1 / n)``
        (the ``1 / n`` cap bites only when the exploration share is too large to
        give each other item ``exploration / (n - 1)``), the gradient policy
        ``min_exploration / n``.
        """
        return 0.0

    def with_request(self, baseline: str | None = None, items: Mapping[str, Item] | None = None) -> Policy:
        """This policy for one request that brings its own baseline or items not in the catalog.

        ``baseline`` is the item the caller would show without this service (a
        Personalizer client's first action or ``baselineAction``); ``items``
        are request-scoped items with their features (Personalizer's ad-hoc
        actions).  A policy that uses neither returns itself; the rules tier
        uses the baseline, the gradient tier scores the items by their features.
        Cheap (a shallow copy at most): it is called per request.
        """
        return self

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


class TierPolicy(Policy):
    """A rung of the ladder: a policy that can be built for a slot of a config (see :mod:`bandit.tiers`)."""

    @classmethod
    @abstractmethod
    def for_slot(cls, config: StoreConfig, slot: SlotConfig, snapshot: Mapping[str, Any] | None = None) -> TierPolicy:
        """The tier's policy for ``slot``: from the config alone (rules), or from a learned ``snapshot``.

        Raises
        ------
        ValueError
            When a learned tier gets no snapshot, or one that does not fit the config (another slot, unknown
            items...).
        """
