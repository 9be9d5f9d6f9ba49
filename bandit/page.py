"""Fill a page's slots in page order, without duplicates.

Each slot's candidates are what is left after the config's and the request's
exclusions, the items earlier slots took, pinned items, and publishers at
their cap; its probability vector is therefore conditional on the earlier
slots' draws, and that conditional propensity is what gets logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.config import StoreConfig
from bandit.policies.base import Decision, Policy
from bandit.policies.rules import RulesPolicy


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
    """

    def __init__(self, config: StoreConfig, policies: Mapping[str, Policy] | None = None):
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

    def fill(
        self,
        context: Mapping[str, Any],
        event_id: str,
        slots: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        exclude: Iterable[str] = (),
    ) -> PageResult:
        """Decide every requested slot (all page slots by default) for one page view.

        ``slots`` and ``candidates`` must already be validated against the config.
        """
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
            self._count_publisher(item, publisher_count, blocked)
        for name in wanted:
            if name in pinned:
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
                decision = self.policies[name].decide(context, eligible, event_id, self._order[name])
            result.decisions.append(decision)
            if name not in pinned:
                blocked.add(decision.item)
                self._count_publisher(decision.item, publisher_count, blocked)
        return result

    def _count_publisher(self, item: str, publisher_count: dict[str, int], blocked: set[str]) -> None:
        """Count ``item`` against its publisher's cap; block the publisher's other items once it is reached."""
        if self._cap is None:
            return
        publisher = self._publisher[item]
        publisher_count[publisher] = count = publisher_count.get(publisher, 0) + 1
        if count >= self._cap:
            blocked.update(self._publisher_items[publisher])
