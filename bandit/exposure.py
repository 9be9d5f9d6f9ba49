"""Publisher exposure caps: which publishers a slot may not show next, over a sliding window of its impressions.

A slot with ``exposure: {max_share: s, window: W}`` (``slots[].exposure``)
lets no publisher take more than ``L = floor(s × W)`` of any ``W``
consecutive impressions.  :class:`ExposureTracker` keeps, per capped slot,
the publishers of its last ``W − 1`` impressions (a deque and a count per
publisher, O(1) per impression) and the set of publishers at their budget:

    P is *capped* for the next impression when ``count_P + 1 > L``, i.e. ``count_P ≥ L``,
    ``count_P`` counted over the last ``W − 1`` impressions.

**Why that is exact.**  Take any ``W`` consecutive impressions and the last
impression of P among them, at time ``t``.  P was not capped at ``t``, so the
``W − 1`` impressions before ``t`` held at most ``L − 1`` of P's; the window's
P impressions all lie in those ``W − 1`` or at ``t``: at most ``L``.  So the
guarantee holds for every window as long as every impression the slot serves
was drawn while P's items were withheld whenever P was capped.

:class:`bandit.page.PageFiller` does the withholding *before* the slot's
policy computes its probabilities, so the logged propensities are exact and
every served item keeps propensity > 0.  Two cases bypass the cap and are
still recorded (they count against the publisher's budget from then on): a
pin in the slot, and a slot whose every eligible candidate is capped (the
capped items are then left in rather than leaving the slot unfilled).

One tracker is one process's view: in the HTTP service each gunicorn worker
keeps its own, and each worker's own stream of impressions respects the cap
exactly.  Their sum respects it over long spans, not per ``W`` impressions: a
worker that served ``n`` impressions of the slot showed P at most
``ceil(n / W) × L`` times, so over a span in which ``k`` workers served ``N``
impressions in all, P's share is at most ``s × (1 + k × W / N)`` (exactly ``s``
when every worker served a multiple of ``W``).  Threads of one worker share a
tracker; :attr:`SlotWindow.lock` makes "which publishers are capped → the
policy's draw → record it" one step, so concurrent requests cannot both spend
a publisher's last impression.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from bandit.config.settings import ExposureSettings

if TYPE_CHECKING:
    from bandit.config import StoreConfig


class SlotWindow:
    """One capped slot's sliding window of publishers.

    >>> w = SlotWindow("hero", max_share=0.5, window=4)  # at most 2 of any 4 impressions
    >>> for p in ["a", "a", "b"]:
    ...     w.record(p)
    >>> sorted(w.capped)  # 'a' has 2 of the last 3: a 4th impression of 'a' would make 3 of 4
    ['a']
    >>> w.record("b")  # the window slides: the first 'a' drops out; now 'a' 1, 'b' 2 of the last 3
    >>> sorted(w.capped)
    ['b']
    """

    def __init__(self, slot: str, max_share: float, window: int):
        self.slot = slot
        self.lock = threading.Lock()  # held by PageFiller from "which are capped" to "record the draw"
        self._recent: deque[str] = deque()  # the last window − 1 impressions' publishers, oldest first
        self._counts: dict[str, int] = {}
        self.capped: set[str] = set()  # publishers with count ≥ limit: withheld from the next impression
        self._settle(max_share, window)

    def _settle(self, max_share: float, window: int) -> None:
        limit = ExposureSettings(max_share, window).limit
        if not 0 < max_share <= 1 or window < 2 or limit < 1:
            raise ValueError(
                f"slot {self.slot!r}: need 0 < max_share ≤ 1, window ≥ 2 and max_share × window ≥ 1 "
                f"(got {max_share}, {window})"
            )
        self.max_share, self.window, self.limit = max_share, window, limit

    def count(self, publisher: str) -> int:
        """``publisher``'s impressions among the last ``window − 1``."""
        return self._counts.get(publisher, 0)

    def __len__(self) -> int:
        return len(self._recent)

    def record(self, publisher: str) -> None:
        """One served impression of ``publisher``'s item in the slot: O(1)."""
        recent, counts, limit = self._recent, self._counts, self.limit
        if len(recent) == self.window - 1:
            old = recent.popleft()
            n = counts[old] - 1
            if n:
                counts[old] = n
            else:
                del counts[old]
            if n == limit - 1:
                self.capped.discard(old)
        recent.append(publisher)
        n = counts[publisher] = counts.get(publisher, 0) + 1
        if n >= limit:
            self.capped.add(publisher)

    def resize(self, max_share: float, window: int) -> None:
        """New settings, keeping the newest impressions that fit the new window (a config reload).

        Call it holding :attr:`lock`.
        """
        history = list(self._recent)[-(window - 1) :]
        self._settle(max_share, window)
        self._recent.clear()
        self._counts.clear()
        self.capped.clear()
        for publisher in history:
            self.record(publisher)


class ExposureTracker:
    """The sliding windows of every slot with an ``exposure`` cap, for one process.

    Build it from a config, or empty and let :class:`bandit.page.PageFiller`
    :meth:`configure` it.  Handing one tracker to the next page filler (after a
    config reload or a ladder change) keeps the windows: ``PageFiller(config,
    policies, exposure=previous.exposure)``.
    """

    def __init__(self, config: StoreConfig | None = None):
        self._windows: dict[str, SlotWindow] = {}
        self._lock = threading.Lock()
        if config is not None:
            self.configure(config)

    def configure(self, config: StoreConfig) -> dict[str, SlotWindow]:
        """Track exactly ``config``'s capped slots; a slot whose settings did not change keeps its window.

        Returns the window of each capped slot (empty when no slot has a cap).
        """
        with self._lock:
            windows: dict[str, SlotWindow] = {}
            for slot in config.slots:
                settings = slot.exposure
                if settings is None:
                    continue
                window = self._windows.get(slot.name)
                if window is None:
                    window = SlotWindow(slot.name, settings.max_share, settings.window)
                elif (window.max_share, window.window) != (settings.max_share, settings.window):
                    with window.lock:
                        window.resize(settings.max_share, settings.window)
                windows[slot.name] = window
            self._windows = windows
            return dict(windows)

    def window(self, slot: str) -> SlotWindow | None:
        """The slot's window, or None when it has no cap."""
        return self._windows.get(slot)

    @property
    def slots(self) -> tuple[str, ...]:
        """The capped slots."""
        return tuple(self._windows)

    def capped(self, slot: str) -> frozenset[str]:
        """Publishers the slot may not show next (empty for a slot without a cap)."""
        window = self._windows.get(slot)
        if window is None:
            return frozenset()
        with window.lock:
            return frozenset(window.capped)

    def record(self, slot: str, publisher: str) -> None:
        """One impression of ``publisher`` in ``slot`` (ignored for a slot without a cap)."""
        window = self._windows.get(slot)
        if window is not None:
            with window.lock:
                window.record(publisher)
