"""Where the service and the learner read the time: injectable, so tests move time instead of sleeping.

Everything that stamps or compares wall time — an event's ``ts`` and reward
window in ``/v1/rank`` and ``/v1/reward``, the joiner's "which windows have
closed", the ladder runner's transition times — asks a :class:`Clock`.  In
production that is :class:`SystemClock`; a test hands :func:`create_app
<service.http.app.create_app>`, the :class:`~service.learner.joiner.Joiner`
and the :class:`~service.learner.ladder_runner.LadderRunner` one
:class:`ManualClock` and advances it past a reward window at once.  (Polling
intervals — config reloads, ladder version checks, lease renewals — stay on
the monotonic clock: they are about this process's pace, not about events.)

>>> clock = ManualClock(1_700_000_000.0)
>>> clock.advance(1800)
1700001800.0
>>> clock.time()
1700001800.0
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the epoch, as ``time.time()``."""

    def time(self) -> float: ...


class SystemClock:
    """The machine's wall clock."""

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests, replays)."""

    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else float(start)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move ``seconds`` forward (never back) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds
        return self.now


SYSTEM_CLOCK = SystemClock()
