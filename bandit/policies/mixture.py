"""The ladder's served mixture: a slot's incumbent, a ramping challenger or holdout, and a shadow, as one policy.

The arm that serves is drawn with its own random number, and the logged
probability vector is the *mixture* of both arms, which is the true
probability each item had — so off-policy estimates stay valid during a ramp
and a holdout.  A shadow is evaluated on every decision and logged beside it;
with ``probe`` the incumbent's exploration follows it (:func:`probe_pmf`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bandit.policies.base import Decision, Policy, arm_key
from bandit.policies.sampling import sample_index, uniform_for

if TYPE_CHECKING:
    from bandit.config import Item


class LadderPolicy(Policy):
    """Serve a slot from its primary policy, with an optional secondary arm and a shadow.

    Parameters
    ----------
    primary
        Serves ``1 - share`` of the traffic.
    secondary, share
        Serves ``share`` of the traffic (a ramping challenger, or the old tier as holdout).
    holdout, holdout_share
        A third arm serving ``holdout_share`` of the traffic: the last promotion's holdout
        while a canary is the secondary, so the promoted tier stays judged against it.
    shadow
        Evaluated on every decision and logged beside it.
    probe
        Share of the primary's exploration that follows the shadow's
        probability vector (see :func:`probe_pmf`); 0 serves nothing of the
        shadow.  The primary's favourite keeps its own probability.  With a
        secondary as well (a holdout while the next challenger is in shadow),
        the primary's share is probed and the secondary's is not.

    The served item is drawn from the arm chosen with ``uniform_for(event_id,
    slot + "/arm")``; the logged ``pmf`` is the mixture ``(1-share-h)·π₁ + share·π₂ + h·π₃``
    (``h`` the holdout's share), and ``tier``/``policy_version`` name the arm that served; ``arms``
    holds each arm's own probability of the served item (the primary's name wins a clash).
    If the secondary, the holdout or the shadow raises, the primary serves alone and
    ``on_error`` is told.
    """

    def __init__(
        self,
        slot: str,
        primary: Policy,
        secondary: Policy | None = None,
        share: float = 0.0,
        shadow: Policy | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
        probe: float = 0.0,
        holdout: Policy | None = None,
        holdout_share: float = 0.0,
    ):
        if secondary is None and share:
            raise ValueError("share without a secondary policy")
        if holdout is None and holdout_share:
            raise ValueError("holdout_share without a holdout policy")
        if not 0 <= share <= 1:
            raise ValueError(f"share must be in [0, 1], got {share}")
        if not 0 <= holdout_share <= 1 - share:
            raise ValueError(f"holdout_share must be in [0, 1 - share], got {holdout_share}")
        if not 0 <= probe <= 1:
            raise ValueError(f"probe must be in [0, 1], got {probe}")
        self.slot = slot
        self.primary = primary
        self.secondary = secondary
        self.share = share
        self.holdout = holdout if holdout_share > 0 else None
        self.holdout_share = holdout_share if holdout is not None else 0.0
        self.shadow = shadow
        self.on_error = on_error
        self.probe = probe if shadow is not None else 0.0
        self.tier = primary.tier  # type: ignore[misc]
        self.version = primary.version

    def decide(
        self, context: Mapping[str, Any], candidates: Sequence[str], event_id: str, position: int = 0
    ) -> Decision:
        if self.shadow is None:
            if not self._mixing:
                return self.primary.decide(context, candidates, event_id, position)
            return self._mixed(context, candidates, event_id, position)
        try:
            probs: list[float] | None = self.shadow.pmf(context, candidates)[0]
        except Exception as exc:  # a broken challenger must never break serving
            self._failed("shadow", exc)
            probs = None
        if self._mixing:
            decision = self._mixed(context, candidates, event_id, position, probs)
        elif probs is not None and self.probe > 0:
            decision = self._probed(context, candidates, event_id, position, probs)
        else:
            decision = self.primary.decide(context, candidates, event_id, position)
        if probs is None:
            return decision
        return _replace(decision, shadow={"version": self.shadow.version, "tier": self.shadow.tier, "pmf": probs})

    def _probed(self, context: Mapping[str, Any], candidates: Sequence[str], event_id: str, position: int,
                shadow: list[float]) -> Decision:  # fmt: skip
        p_primary, why = self.primary.pmf(context, candidates)
        probs = probe_pmf(p_primary, shadow, self.probe)
        index = sample_index(probs, uniform_for(event_id, self.slot))
        if probs[index] < max(probs):
            if shadow[index] == max(shadow) and p_primary[index] < max(p_primary):
                why = f"probe: the challenger's pick; {why}"
            else:
                why = f"explore; {why}"
        return Decision(self.slot, position, candidates[index], probs[index], tuple(candidates), tuple(probs),
                        self.tier, self.version, why)  # fmt: skip

    @property
    def _mixing(self) -> bool:
        return (self.secondary is not None and self.share > 0) or self.holdout is not None

    def _others(self) -> list[tuple[str, Policy, float]]:
        """The arms beside the primary that serve a share: the secondary, then the holdout."""
        others = []
        if self.secondary is not None and self.share > 0:
            others.append(("secondary", self.secondary, self.share))
        if self.holdout is not None:
            others.append(("holdout", self.holdout, self.holdout_share))
        return others

    def _mix(self, primary: Sequence[float], others: Sequence[tuple[float, Sequence[float]]]) -> list[float]:
        """The logged mixture, in one pass; ``decide`` and ``pmf`` share it, so they agree to the last bit."""
        rest = 1.0 - self.share - self.holdout_share
        if len(others) == 1:
            ((s, b),) = others
            return [rest * x + s * y for x, y in zip(primary, b, strict=True)]
        (s, b), (h, c) = others
        return [rest * x + s * y + h * z for x, y, z in zip(primary, b, c, strict=True)]

    def _mixed(self, context: Mapping[str, Any], candidates: Sequence[str], event_id: str, position: int,
               shadow: list[float] | None = None) -> Decision:  # fmt: skip
        p_primary, why_primary = self.primary.pmf(context, candidates)
        if shadow is not None and self.probe > 0:
            p_primary = probe_pmf(p_primary, shadow, self.probe)
        arms: list[tuple[Policy, float, list[float], str]] = []
        for which, policy, share in self._others():
            try:
                probs, why = policy.pmf(context, candidates)
            except Exception as exc:
                self._failed(which, exc)
                return self.primary.decide(context, candidates, event_id, position)
            arms.append((policy, share, probs, why))
        u = uniform_for(event_id, self.slot + "/arm")
        arm, probs, why = self.primary, p_primary, why_primary
        edge = 0.0
        for policy, share, p, w in arms:  # the secondary's share first (as with one secondary), then the holdout's
            edge += share
            if u < edge or share >= 1.0:
                arm, probs, why = policy, p, w
                break
        index = sample_index(probs, uniform_for(event_id, self.slot))
        if probs[index] < max(probs):
            why = f"explore; {why}"
        mixture = self._mix(p_primary, [(share, p) for _, share, p, _ in arms])
        served = {arm_key(policy.tier, policy.version): p[index] for policy, _, p, _ in reversed(arms)}
        served[arm_key(self.primary.tier, self.primary.version)] = p_primary[index]
        return Decision(self.slot, position, candidates[index], mixture[index], tuple(candidates), tuple(mixture),
                        arm.tier, arm.version, why, arms=served)  # fmt: skip

    def with_request(self, baseline: str | None = None, items: Mapping[str, Item] | None = None) -> LadderPolicy:
        """Every arm scoped to the request (see :meth:`Policy.with_request`)."""
        if baseline is None and not items:
            return self
        scoped = copy.copy(self)
        scoped.primary = self.primary.with_request(baseline, items)
        if self.secondary is not None:
            scoped.secondary = self.secondary.with_request(baseline, items)
        if self.holdout is not None:
            scoped.holdout = self.holdout.with_request(baseline, items)
        if self.shadow is not None:
            scoped.shadow = self.shadow.with_request(baseline, items)
        return scoped

    def _failed(self, which: str, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(which, exc)

    def floor(self, n: int) -> float:
        """What both arms promise an item neither favours (during a probe, what the primary keeps of its floor)."""
        primary = (1 - self.probe) * self.primary.floor(n)
        floor = (1 - self.share - self.holdout_share) * primary
        if self.secondary is not None and self.share > 0:
            floor += self.share * self.secondary.floor(n)
        if self.holdout is not None:
            floor += self.holdout_share * self.holdout.floor(n)
        return floor

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        p_primary, why = self.primary.pmf(context, candidates)
        if self.shadow is not None and self.probe > 0:
            try:
                p_primary = probe_pmf(p_primary, self.shadow.pmf(context, candidates)[0], self.probe)
            except Exception as exc:  # as in decide(): the primary alone
                self._failed("shadow", exc)
        if not self._mixing:
            return p_primary, why
        return self._mix(
            p_primary, [(share, policy.pmf(context, candidates)[0]) for _, policy, share in self._others()]
        ), why

    def clone(self) -> LadderPolicy:
        return LadderPolicy(self.slot, self.primary, self.secondary, self.share, self.shadow, self.on_error,
                            self.probe, self.holdout, self.holdout_share)  # fmt: skip


def probe_pmf(incumbent: Sequence[float], challenger: Sequence[float], probe: float) -> list[float]:
    """The incumbent's probabilities with a share ``probe`` of its exploration sent to the challenger.

    The incumbent's favourite ``g`` keeps its probability; every other item
    gives up ``probe`` of its exploration probability, and that mass,
    ``probe · (1 − π(g))``, is spread by the challenger's own probabilities:

        p(a) = π(a)·(1 − probe)·[a ≠ g] + π(g)·[a = g] + probe·(1 − π(g))·π_c(a)

    So the shoppers who would have seen the incumbent's pick still see it, and
    the rounds the incumbent spends exploring land where the challenger would
    act — the rounds off-policy evaluation needs to judge it.  The result is
    what is served and logged, so every estimate stays unbiased.
    """
    g = max(range(len(incumbent)), key=incumbent.__getitem__)
    spread = probe * (1.0 - incumbent[g])
    out = [p * (1.0 - probe) + spread * c for p, c in zip(incumbent, challenger, strict=True)]
    out[g] = incumbent[g] + spread * challenger[g]
    return out


def _replace(decision: Decision, **changes: Any) -> Decision:
    values = {name: getattr(decision, name) for name in Decision.__slots__}
    values.update(changes)
    return Decision(**values)
