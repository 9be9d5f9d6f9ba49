"""Per-slot learning settings: how a slot grows its tree (``tree``) and when it escalates (``escalation``)."""

from __future__ import annotations

from dataclasses import dataclass

ESCALATION_MODES = ("auto", "manual", "off")


@dataclass(frozen=True)
class TreeSettings:
    """How the slot's decision tree is grown (``slots[].tree``); see docs/ladder.md.

    Attributes
    ----------
    max_depth
        Depth limit; 2–4 stays readable.
    min_leaf
        Fewest logged rounds in a leaf.
    features
        Context fields the tree may split on; empty: every field a request
        always carries (required, or with a default).
    top_items
        How many items each leaf lists, best first.
    pessimism
        How much the model's advantage of an item in a leaf is discounted
        when the log rarely showed it there: ``pessimism × sd(reward) /
        √(1 + times shown in the leaf)``, counted on the rounds the tree is
        grown on (at most 20,000, evenly spread over the window).  0 trusts
        the model everywhere.
    """

    max_depth: int = 3
    min_leaf: int = 200
    features: tuple[str, ...] = ()
    top_items: int = 5
    pessimism: float = 0.5


@dataclass(frozen=True)
class EscalationSettings:
    """When a slot moves from rules to a learned tree and back (``slots[].escalation``); see docs/ladder.md.

    ``min_lift`` is relative: the lower confidence bound of the challenger's
    off-policy lift must be at least this fraction of the incumbent's value.
    ``guardrail_margin`` is relative too.  With ``max_events`` above
    ``min_events`` the gate looks again at twice as many shadow events, and
    twice that, up to ``max_events``, while its interval still straddles
    ``min_lift``; each look uses a Bonferroni share of ``1 - confidence``.
    ``probe`` is the share of the
    incumbent's exploration that follows the challenger during shadow (0: pure
    shadow, nothing of the challenger is served).
    """

    mode: str = "off"
    min_events: int = 5000
    max_events: int = 0  # 0: one look at min_events
    min_lift: float = 0.02
    confidence: float = 0.95
    estimator: str = "dr"
    retrain_every: int = 5000
    train_window: int = 50000
    ramp: tuple[float, ...] = (0.05, 0.25, 1.0)
    ramp_events: int = 1000
    holdout: float = 0.05
    guardrail_margin: float = 0.10
    guardrail_min_events: int = 300
    guardrail_window: int = 2000
    guardrail_confidence: float = 0.99
    probe: float = 0.0

    def looks(self) -> tuple[int, ...]:
        """Shadow events at which the gate looks: ``min_events``, doubling, up to ``max_events``."""
        looks, n = [], self.min_events
        while n < self.max_events:
            looks.append(n)
            n *= 2
        looks.append(max(self.min_events, self.max_events))
        return tuple(looks)

    def look_confidence(self) -> float:
        """Confidence of each look, so that all looks together keep ``confidence`` (Bonferroni)."""
        return 1.0 - (1.0 - self.confidence) / len(self.looks())
