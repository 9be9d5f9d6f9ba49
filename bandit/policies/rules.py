"""The first rung of the ladder: ordered YAML rules, first match wins.

The matched rule names an ordered list of items; the first one still eligible
(not excluded, not already placed on the page, not over its publisher's cap)
is the favourite.  No rule matching, the request's baseline (a Personalizer
client's first action or ``baselineAction``: what the store would show
without this service) is the favourite if it is eligible, else the slot's
``default`` list; nothing named being eligible, every candidate is equally
likely.  The slot's exploration share is spread evenly over the other
eligible items, so the log carries propensities that later tiers can be
evaluated and trained on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from bandit.config import Item, Rule, SlotConfig, StoreConfig
from bandit.policies.base import TierPolicy, greedy_with_exploration


class RulesPolicy(TierPolicy):
    """Serve a slot from its YAML rules.

    Parameters
    ----------
    slot_config
        The slot's parsed config (rules, default items, exploration share).
    version
        The config version, logged with every decision.

    Examples
    --------
    >>> from bandit.config import SlotConfig, Rule, Condition
    >>> slot = SlotConfig("hero", 0, "rules", 0.1,
    ...                   (Rule("jp", (Condition("country", "eq", "JP"),), ("b",)),), ("a",))
    >>> policy = RulesPolicy(slot, "v1")
    >>> policy.pmf({"country": "JP"}, ["a", "b", "c"])
    ([0.05, 0.9, 0.05], 'rule:jp')
    >>> policy.pmf({"country": "US"}, ["a", "b", "c"])
    ([0.9, 0.05, 0.05], 'default')
    >>> policy.with_request(baseline="c").pmf({"country": "US"}, ["a", "b", "c"])
    ([0.05, 0.05, 0.9], 'baseline')
    """

    tier = "rules"

    def __init__(self, slot_config: SlotConfig, version: str = ""):
        if not 0.0 < slot_config.exploration <= 1.0:
            raise ValueError(f"exploration must be in (0, 1], got {slot_config.exploration}")
        self.slot_config = slot_config
        self.slot = slot_config.name
        self.version = version
        self.exploration = slot_config.exploration
        self._rules: tuple[Rule, ...] = slot_config.rules
        self._baseline: str | None = None

    @classmethod
    def for_slot(cls, config: StoreConfig, slot: SlotConfig, snapshot: Mapping[str, Any] | None = None) -> RulesPolicy:
        """The slot's rules from the config (rules have no snapshot: one is ignored)."""
        return cls(slot, config.version)

    def favourite(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[int | None, str]:
        """Index of the item the rules pick among ``candidates`` (``None``: none eligible) and why."""
        # A rule names one or two items: scanning the candidates for them is cheaper than indexing all of them.
        for rule in self._rules:
            if rule.matches(context):
                for item in rule.items:
                    if item in candidates:
                        return candidates.index(item), f"rule:{rule.name}"
        if self._baseline is not None and self._baseline in candidates:
            return candidates.index(self._baseline), "baseline"
        for item in self.slot_config.default:
            if item in candidates:
                return candidates.index(item), "default"
        return None, "fallback:uniform"

    def with_request(self, baseline: str | None = None, items: Mapping[str, Item] | None = None) -> RulesPolicy:
        """With ``baseline`` the favourite when no rule matches (before the slot's default)."""
        if baseline is None or baseline == self._baseline:
            return self
        scoped = copy.copy(self)
        scoped._baseline = baseline
        return scoped

    def floor(self, n: int) -> float:
        return 0.0 if n < 2 else min(self.exploration / (n - 1), 1.0 / n)

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        favourite, explanation = self.favourite(context, candidates)
        if favourite is None:
            # Every item the rules name is taken or excluded: show something, evenly.
            n = len(candidates)
            return [1.0 / n] * n, explanation
        return greedy_with_exploration(candidates, favourite, self.exploration), explanation

    def clone(self) -> RulesPolicy:
        return RulesPolicy(self.slot_config, self.version)
