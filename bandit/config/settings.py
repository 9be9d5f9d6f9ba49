"""Per-slot learning settings: how a slot grows its tree (``tree``), learns its gradient policy (``gradient``) and
when it escalates (``escalation``).  Every default is documented in docs/config.md and docs/ladder.md."""

from __future__ import annotations

import math
from dataclasses import dataclass

ESCALATION_MODES = ("auto", "manual", "off")
LEARNED_TIERS = ("tree", "gradient")  # the rungs a slot can climb to, in ladder order


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
    shadow, nothing of the challenger is served).  ``tiers`` are the rungs the
    slot may climb to, in ladder order; the slot climbs one at a time.
    ``canary`` is the share of traffic a gradient challenger serves live before
    and during its gate (0: shadow only), following its own snapshots for
    ``canary_events`` joined events, then fixed for the gate.  While it learns
    it is dropped only when its live reward falls below ``1 − canary_margin``
    of the incumbent's (it starts out worse: that is what it is there to mend).
    """

    mode: str = "off"
    tiers: tuple[str, ...] = LEARNED_TIERS
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
    canary: float = 0.10
    canary_events: int = 20000
    canary_margin: float = 0.5

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


@dataclass(frozen=True)
class GradientSettings:
    """How the slot's gradient policy learns (``slots[].gradient``); the update rule is in docs/ladder.md.

    Rewards enter scaled by the mean positive reward seen so far, so ``entropy``
    and the optimism bonus mean the same in any store's reward units.

    Attributes
    ----------
    learning_rate
        The actor's AdaGrad step on its logits' weights.
    critic_learning_rate
        The critic's AdaGrad step, divided by the number of active crosses.
    entropy
        Weight of the policy's entropy in its objective, relative to the policy's
        value per decision (``β = entropy · v̄``): keeps a softmax from collapsing
        on one item before the evidence says so, and sets how sharp it gets — it
        tends to ``π ∝ exp(q̂ / (entropy · v̄))``, so items whose values differ by
        a few ``entropy`` of the slot's mean value share its traffic.
    optimism
        The critic's estimate is raised by this many standard deviations of its
        logit before the actor sees it (optimism in the face of uncertainty):
        an item that shares features with a weaker one is not written off
        before it has been shown.  0.5 by default, measured on every slot of
        the shipped scenarios (docs/ladder.md, "Optimism"); 0 turns it off.
    own_crosses
        How fast the critic learns what is particular to one item: the step of an
        item's own crosses (each context token × the item's ``id``) is raised so
        that they alone take this share of the residual the item's crosses take
        together.  The critic divides every step by the number of active crosses
        (as Vowpal Wabbit normalises), so with an item of 6 tokens its own crosses
        move 1/6 of each correction and the shared ones (publisher, genre, price)
        the rest: an item that is good only in one segment, where the items it
        shares features with are not, was learned too slowly to be found
        (docs/ladder.md, "an item's own crosses").  1 by default; 0 turns it off
        (every cross steps alike).
    min_exploration
        Share of the traffic spread evenly over the candidates whatever the
        policy says: the floor that keeps every propensity usable for the next
        challenger's off-policy evaluation (its largest weight is
        ``(n − 1) / min_exploration``).
    kl_limit
        The trust region: when the mean KL divergence between the deployed
        snapshot and the learning policy over recent contexts reaches it, a new
        snapshot is published; a batch whose step would go past it is cut back
        to it (a line search), so no published step is larger.
    weight_clip
        Importance weights ``π/μ`` of the logged item are clipped here.
    ratio_clip
        PPO's clip: a logged item whose probability moved by more than this share
        from the deployed snapshot, in the direction its advantage pushes, adds no
        further correction.
    batch
        Joined records per update.
    prior
        Prior precision of each critic weight (its uncertainty before data).
    halflife
        Records after which old evidence counts half in the critic's and the
        actor's step sizes, the critic's uncertainty and the items' values (0:
        never forget): how the learner keeps adapting to drift.
    context_bits, item_bits, pairs
        Feature hashing (see :mod:`bandit.features`): ``2^context_bits`` ×
        ``2^item_bits`` weights; ``pairs`` adds a token per pair of context fields.
    own_pairs
        Each item gets a weight of its own for every pair of the context's
        fields other than the hour and the day (``country=US|age#0``), crossed
        with its ``id`` only: a segment that is a conjunction of two fields,
        where one item is best, is learned without lending it to the item's
        peers or diluting the shared crosses' steps.
    number_bins
        A number in the context with a declared range (``age: {min: 13, max:
        120}``) becomes one token per equal-width bin of that range.  With 16
        a bin of ages 13–120 spans 6.7 years; with 5, the original hashing, it
        spanned 21 (13–34, 34–56), so a segment of ages 18–40 had no weight of
        its own: every bin mixed its shoppers with their neighbours'.
    min_events
        Records the learner must have learned from before its snapshot may be
        proposed as a challenger.
    fairness
        Weight ``λ`` of publishers' exposure concentration in the actor's
        objective (0: off).  The objective becomes ``E[r] − λ · r̄ · HHI``, with
        ``HHI = Σ_p share_p²`` the Herfindahl index of the publishers' shares
        of the slot (the policy's own expected shares on recent contexts) and
        ``r̄`` the slot's mean reward per impression, so ``λ = 1`` prices a
        slot given wholly to one publisher at one average reward per
        impression.  A soft preference, unlike the hard ``exposure`` cap.
    """

    learning_rate: float = 0.05
    critic_learning_rate: float = 0.5
    entropy: float = 0.05
    optimism: float = 0.5
    own_crosses: float = 1.0
    min_exploration: float = 0.02
    kl_limit: float = 0.05
    weight_clip: float = 20.0
    ratio_clip: float = 0.5
    batch: int = 512
    prior: float = 1.0
    halflife: int = 50000
    context_bits: int = 12
    item_bits: int = 10
    pairs: bool = False
    own_pairs: bool = True
    number_bins: int = 16
    min_events: int = 50000
    fairness: float = 0.0


@dataclass(frozen=True)
class ColdStartSettings:
    """A slot's budget for new catalog items (``slots[].cold_start``); served by :mod:`bandit.coldstart`.

    Attributes
    ----------
    impressions
        A new item keeps its budget until it has this many impressions in the slot.
    share
        The share of the slot's traffic spread evenly over its new items while any is eligible.
    """

    impressions: int = 2000
    share: float = 0.05


@dataclass(frozen=True)
class ExposureSettings:
    """A slot's publisher exposure cap (``slots[].exposure``); enforced by :mod:`bandit.exposure`.

    No publisher may take more than ``limit = floor(max_share × window)`` of any
    ``window`` consecutive impressions of the slot.

    Attributes
    ----------
    max_share
        Largest share of the window one publisher may take, in (0, 1].
    window
        Length of the sliding window, in impressions of the slot (≥ 10).
    """

    max_share: float
    window: int

    @property
    def limit(self) -> int:
        """Most impressions one publisher may have in any ``window`` consecutive ones: ``floor(max_share × window)``.

        >>> ExposureSettings(0.4, 2000).limit
        800
        >>> ExposureSettings(0.3, 10).limit
        3
        """
        return math.floor(self.max_share * self.window + 1e-9)
