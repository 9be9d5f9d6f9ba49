"""Simulated time: when each page view happens, and a clock learners can read.

In process, nothing waits: page ``n`` happens at ``Schedule.time_of(n)``, the
reward window closes ``window`` simulated seconds later, and a learner that
retrains hourly sees the clock pass an hour after an hour's worth of pages,
not of wall-clock time.
"""

from __future__ import annotations

import numpy as np

from bandit.config import DAYS

DAY = 86400.0


class Schedule:
    """Page-view times: ``pages_per_day`` pages a day, spread over the hours by ``by_hour`` weights.

    The schedule is deterministic (no random numbers): page ``n`` of a day
    sits at quantile ``(n + 0.5) / pages_per_day`` of the day's traffic curve,
    uniform within each hour.

    >>> s = Schedule(0.0, 24, [1.0] * 24)
    >>> [round(float(t) / 3600, 2) for t in s.times(0, 3)]
    [0.5, 1.5, 2.5]
    """

    def __init__(self, start: float, pages_per_day: float, by_hour: list[float] | tuple[float, ...]):
        weights = np.asarray(by_hour, dtype=float)
        self.start = float(start)
        self.pages_per_day = float(pages_per_day)
        self._cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        self._hours = np.arange(25, dtype=float) * 3600.0

    def times(self, first: int, count: int) -> np.ndarray:
        """Epoch seconds of pages ``first .. first + count - 1``."""
        n = np.arange(first, first + count, dtype=float)
        day = np.floor(n / self.pages_per_day)
        quantile = (n - day * self.pages_per_day + 0.5) / self.pages_per_day
        return self.start + day * DAY + np.interp(quantile, self._cdf, self._hours)

    def time_of(self, index: int) -> float:
        return float(self.times(index, 1)[0])


def hours_and_days(times: np.ndarray) -> tuple[list[int], list[str]]:
    """UTC hour of day and day-of-week name (``mon`` …) of epoch seconds."""
    seconds = np.floor(times).astype(np.int64)
    hours = ((seconds // 3600) % 24).tolist()
    # 1970-01-01 was a Thursday (index 3 in DAYS)
    days = [DAYS[d] for d in ((seconds // 86400 + 3) % 7).tolist()]
    return hours, days


class SimClock:
    """A clock that only moves when the runner moves it; ``now()`` mirrors ``time.time()``."""

    def __init__(self, start: float):
        self.current = float(start)

    def now(self) -> float:
        return self.current

    def advance_to(self, moment: float) -> None:
        if moment < self.current:
            raise ValueError(f"simulated time cannot go back ({moment} < {self.current})")
        self.current = float(moment)
