"""Cold start: a newly added catalog item gets a share of a slot's traffic until it has been seen enough.

A slot with ``cold_start: {impressions: N, share: b}`` (``slots[].cold_start``)
serves, whenever some of its eligible candidates are *new* (fewer than ``N``
impressions in the slot so far), the mixture

    p'(a) = (1 − b) · p(a) + b · 1[a new] / #new eligible items

of its policy's probabilities ``p`` and a uniform draw over the new items.
The mixture is the probability vector that is logged, so propensities stay
exact and every off-policy estimate stays unbiased; the policy's own
shadow challenger is untouched.  Once every new item has ``N`` impressions the
slot serves ``p`` again.

**Which items are new.**  The items of the first config a :class:`ColdStart`
tracker sees are *established*: a store starting the service has sold them
before, and giving every item a budget on day one would only add uniform
exploration.  An item that a later config adds to the catalog (a reload) is
new in every slot with a ``cold_start`` budget; so is an item passed to
:meth:`ColdStart.launch` (the simulator's launches).

**How far it goes.**  Counts are one process's view, like the exposure
windows (:mod:`bandit.exposure`): in the HTTP service each gunicorn worker
counts the impressions it served, so an item gets at most ``k × N``
impressions from its budget with ``k`` workers, and a restarted worker
treats its catalog as established.  The budget also ends when the item has
earned its ``N`` impressions through the policy itself.

**Choosing N and b.**  ``N`` is how many looks a launch needs before the
learner's estimate of it is worth trusting (with click rates near 5 %,
``N = 2000`` gives about 100 clicks, a standard error near 10 % of the
rate); ``b`` bounds what the store pays for those looks: at most ``b`` of
the slot's traffic while a launch is new, so ``N / (b × pages per day)``
days.  A launch that is good rises further through the learner as its
clicks arrive; a bad one is dropped to the policy's exploration floor when
its budget ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bandit.config import StoreConfig


class ColdStart:
    """Which items are new in which budgeted slot, and their impressions so far; one process's view.

    >>> t = ColdStart()
    >>> t.launch(["new-game"])
    >>> t.new_items("hero", ["new-game", "best-seller"], limit=2)
    ['new-game']
    >>> t.record("hero", "new-game"); t.record("hero", "new-game")
    >>> t.new_items("hero", ["new-game", "best-seller"], limit=2)
    []
    """

    def __init__(self) -> None:
        self._catalog: frozenset[str] | None = None  # the catalog seen last; None before any config
        self._new: set[str] = set()
        self._counts: dict[tuple[str, str], int] = {}  # (slot, new item) → impressions
        self.lock = threading.Lock()

    def configure(self, config: StoreConfig) -> None:
        """A config (re)load: items it adds to the catalog seen before are new; removed ones are forgotten."""
        ids = frozenset(config.catalog.ids)
        with self.lock:
            if self._catalog is not None:
                self._new |= ids - self._catalog
            self._new &= ids
            self._counts = {k: v for k, v in self._counts.items() if k[1] in ids}
            self._catalog = ids

    def launch(self, items: Iterable[str]) -> None:
        """Mark ``items`` new (what a reload adding them to the catalog does): their counts start at 0."""
        with self.lock:
            for item in items:
                self._new.add(item)
                for key in [k for k in self._counts if k[1] == item]:
                    del self._counts[key]

    @property
    def new(self) -> frozenset[str]:
        """Every item that is (or was) new since this tracker started, budget spent or not."""
        return frozenset(self._new)

    def new_items(self, slot: str, eligible: Sequence[str], limit: int) -> list[str]:
        """The eligible items that are new and have fewer than ``limit`` impressions in ``slot``."""
        if not self._new:
            return []
        counts = self._counts
        # the new items are few and their budgets soon spent: filter them first, the slot's candidates only then
        pending = {i for i in self._new if counts.get((slot, i), 0) < limit}
        if not pending:
            return []
        return [i for i in eligible if i in pending]

    def record(self, slot: str, item: str) -> None:
        """One impression of ``item`` in ``slot`` (only new items are counted)."""
        if item in self._new:
            key = (slot, item)
            with self.lock:
                self._counts[key] = self._counts.get(key, 0) + 1

    def impressions(self, slot: str, item: str) -> int:
        """``item``'s impressions in ``slot`` counted since it became new."""
        return self._counts.get((slot, item), 0)
