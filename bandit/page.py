"""Fill a page's slots in page order, without duplicates.

Each slot's candidates are what is left after the config's and the request's
exclusions, the items earlier slots took, pinned items, publishers at their
per-page cap and, in a slot with an ``exposure`` cap, publishers at their
budget in the slot's sliding window (:mod:`bandit.exposure`); a slot with a
``cold_start`` budget mixes its policy's probabilities with a uniform draw over
new catalog items (:mod:`bandit.coldstart`).  Its probability
vector is therefore conditional on the earlier slots' draws and the slot's
recent impressions, and that conditional propensity is what gets logged.

A request may also bring candidates that are not catalog items, with their
features (a Personalizer client's ad-hoc actions), and per slot the item it
would show without this service (its baseline): see :meth:`PageFiller.fill`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.coldstart import ColdStart
from bandit.config import Item, StoreConfig
from bandit.exposure import ExposureTracker
from bandit.policies.base import Decision, Policy
from bandit.policies.rules import RulesPolicy
from bandit.policies.sampling import uniform_for


@dataclass
class PageResult:
    """The decisions for the requested slots in page order, and the slots left empty."""

    decisions: list[Decision] = field(default_factory=list)
    unfilled: list[str] = field(default_factory=list)


class PageFiller:
    """Turns a config plus one policy per slot into filled pages.

    Parameters
    ----------
    config
        The parsed store config.
    policies
        Serving policy per slot name; slots missing here are served by their rules.
    exposure
        The sliding windows of the slots with an ``exposure`` cap (default: a new, empty tracker).  Pass the
        previous filler's tracker to a filler built for a reloaded config or new policies to keep the windows
        (it is reconfigured for ``config``); the simulator gives each arm its own.
    coldstart
        Which catalog items are new and their impressions (default: a new tracker that takes ``config``'s
        catalog as established).  Pass the previous filler's to a filler for a reloaded config: the items the
        reload adds become new.

    In a slot with an ``exposure`` cap, the items of every publisher at its budget (see
    :mod:`bandit.exposure`) are removed from the slot's candidates before its policy computes the
    probability vector, so the logged propensities are exact and the served item's is > 0; each served
    impression (pins included) is then recorded.  When removing them would leave no candidate at all,
    they are left in: the slot is served over the cap rather than left empty.  A pin is never blocked
    by the cap.  Slots without a cap cost nothing extra.
    """

    def __init__(
        self,
        config: StoreConfig,
        policies: Mapping[str, Policy] | None = None,
        exposure: ExposureTracker | None = None,
        coldstart: ColdStart | None = None,
    ):
        self.config = config
        self.policies: dict[str, Policy] = {slot.name: RulesPolicy(slot, config.version) for slot in config.slots}
        self.policies.update(policies or {})
        self._publisher = {item.id: item.publisher for item in config.catalog.items}
        self._publisher_items: dict[str, list[str]] = {}
        for item in config.catalog.items:
            self._publisher_items.setdefault(item.publisher, []).append(item.id)
        self._catalog_ids = config.catalog.ids
        self._excluded = config.constraints.exclude
        self._pins = config.constraints.pins
        self._cap = config.constraints.publisher_cap
        self._order = {slot.name: slot.position for slot in config.slots}
        self.exposure = exposure if exposure is not None else ExposureTracker()
        self._windows = self.exposure.configure(config)  # capped slot → its window; empty: no cap anywhere
        self.coldstart = coldstart if coldstart is not None else ColdStart()
        self.coldstart.configure(config)
        self._budgets = {slot.name: slot.cold_start for slot in config.slots if slot.cold_start is not None}

    def fill(
        self,
        context: Mapping[str, Any],
        event_id: str,
        slots: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        exclude: Iterable[str] = (),
        items: Mapping[str, Item] | None = None,
        baselines: Mapping[str, str] | None = None,
    ) -> PageResult:
        """Decide every requested slot (all page slots by default) for one page view.

        ``slots`` and ``candidates`` must already be validated against the config.  ``items``: candidates that
        are not catalog items, with their features and publisher (a Personalizer client's ad-hoc actions);
        ``baselines``: per slot, the item the caller would show without this service (see
        :meth:`bandit.policies.base.Policy.with_request`).
        """
        publisher, publisher_items = self._publisher, self._publisher_items
        if items:
            publisher = {**publisher, **{i: extra.publisher for i, extra in items.items()}}
            publisher_items = {p: list(ids) for p, ids in publisher_items.items()}
            for i, extra in items.items():
                publisher_items.setdefault(extra.publisher, []).append(i)
        wanted = sorted(slots, key=self._order.__getitem__) if slots else [s.name for s in self.config.slots]
        pool = list(candidates) if candidates is not None else list(self._catalog_ids)
        blocked = set(self._excluded)
        blocked.update(exclude)
        result = PageResult()
        pinned: dict[str, str] = {}
        for pin in self._pins:
            if (
                pin.slot in wanted
                and pin.slot not in pinned
                and pin.item not in blocked
                and pin.item in pool
                and pin.matches(context)
            ):
                pinned[pin.slot] = pin.item
                blocked.add(pin.item)
        publisher_count: dict[str, int] = {}
        for item in pinned.values():
            self._count_publisher(item, publisher_count, blocked, publisher, publisher_items)
        windows = self._windows
        for name in wanted:
            policy = self.policies[name]
            if items or (baselines and name in baselines):
                policy = policy.with_request(baselines.get(name) if baselines else None, items)
            if windows and name in windows:
                decision = self._decide_capped(policy, name, context, event_id, pool, blocked, pinned.get(name),
                                               publisher)  # fmt: skip
                if decision is None:
                    result.unfilled.append(name)
                    continue
            elif name in pinned:
                item = pinned[name]
                decision = Decision(
                    name, self._order[name], item, 1.0, (item,), (1.0,), "pin", self.config.version, "pin"
                )
            else:
                # Items of publishers at their cap are in `blocked` too: one pass over the pool per slot.
                eligible = [i for i in pool if i not in blocked]
                if not eligible:
                    result.unfilled.append(name)
                    continue
                decision = policy.decide(context, eligible, event_id, self._order[name])
                if self._budgets and name in self._budgets:
                    decision = self._cold_start(decision, event_id)
            result.decisions.append(decision)
            if name not in pinned:
                blocked.add(decision.item)
                self._count_publisher(decision.item, publisher_count, blocked, publisher, publisher_items)
        return result

    def _decide_capped(
        self,
        policy: Policy,
        name: str,
        context: Mapping[str, Any],
        event_id: str,
        pool: list[str],
        blocked: set[str],
        pinned: str | None,
        publisher: Mapping[str, str],
    ) -> Decision | None:
        """Decide a slot with an exposure cap: withhold publishers at their budget, then record the impression.

        Holding the slot window's lock from reading the capped publishers to recording the draw keeps the
        guarantee exact when threads share the tracker.
        """
        window = self._windows[name]
        with window.lock:
            if pinned is not None:
                decision = Decision(
                    name, self._order[name], pinned, 1.0, (pinned,), (1.0,), "pin", self.config.version, "pin"
                )
            else:
                eligible = [i for i in pool if i not in blocked]
                if not eligible:
                    return None
                capped = window.capped
                if capped:
                    # Left as they are when every eligible item is capped: serve over the cap, not nothing.
                    eligible = [i for i in eligible if publisher[i] not in capped] or eligible
                decision = policy.decide(context, eligible, event_id, self._order[name])
                if self._budgets and name in self._budgets:
                    decision = self._cold_start(decision, event_id)
            window.record(publisher[decision.item])
        return decision

    def _cold_start(self, decision: Decision, event_id: str) -> Decision:
        """Mix the slot's budget for new items into its decision: exact mixture sampling, exact propensities.

        With probability ``share`` (its own random number, from the event id) one of the new eligible items is
        drawn uniformly, otherwise the policy's draw stands; the logged ``pmf`` is the mixture.
        """
        budget = self._budgets[decision.slot]
        tracker = self.coldstart
        new = tracker.new_items(decision.slot, decision.candidates, budget.impressions)
        if not new:
            if tracker.new:
                tracker.record(decision.slot, decision.item)
            return decision
        share, fresh = budget.share, set(new)
        extra = share / len(new)
        pmf = tuple((1.0 - share) * p + (extra if c in fresh else 0.0)
                    for c, p in zip(decision.candidates, decision.pmf, strict=True))  # fmt: skip
        u = uniform_for(event_id, f"{decision.slot}/cold-start")
        item, explanation = decision.item, decision.explanation
        if u < share:
            item = new[min(int(u / share * len(new)), len(new) - 1)]
            explanation = f"cold-start; {explanation}"
        tracker.record(decision.slot, item)
        index = decision.candidates.index(item)
        arms = decision.arms
        if arms is not None:
            # The arms' weights (arms[k] / propensity) stay exact: 1 on the budget's draws, which no arm made, and
            # the policy's own π_k / π otherwise, the arms having drawn as before (see Decision.arms).
            scale = pmf[index] / decision.propensity
            arms = {k: pmf[index] if u < share else p * scale for k, p in arms.items()}
        return dataclasses.replace(decision, item=item, propensity=pmf[index], pmf=pmf, explanation=explanation,
                                   arms=arms)  # fmt: skip

    def _count_publisher(
        self,
        item: str,
        publisher_count: dict[str, int],
        blocked: set[str],
        publisher_of: Mapping[str, str],
        publisher_items: Mapping[str, list[str]],
    ) -> None:
        """Count ``item`` against its publisher's cap; block the publisher's other items once it is reached."""
        if self._cap is None:
            return
        publisher = publisher_of[item]
        publisher_count[publisher] = count = publisher_count.get(publisher, 0) + 1
        if count >= self._cap:
            blocked.update(publisher_items[publisher])
