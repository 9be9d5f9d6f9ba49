"""A one-line progress bar for the simulator's commands."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line progress bar on stderr; silent when stderr is not a terminal or when disabled."""

    def __init__(self, total: int, label: str = "simulating", enabled: bool = True, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self.started = time.perf_counter()
        self._last = -1

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        percent = min(100, self.done * 100 // self.total)
        if percent == self._last:
            return
        self._last = percent
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        bar = "#" * (percent * 30 // 100)
        self.stream.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {rate:,.0f} pages/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
