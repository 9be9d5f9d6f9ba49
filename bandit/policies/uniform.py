"""Every eligible candidate equally likely: the baseline to evaluate against, not a serving tier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandit.policies.base import Policy


class UniformPolicy(Policy):
    """Every eligible candidate equally likely (a baseline to evaluate, not a serving tier)."""

    tier = "uniform"

    def __init__(self, slot: str):
        self.slot = slot
        self.version = "uniform"

    def floor(self, n: int) -> float:
        return 1.0 / n if n else 0.0

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        n = len(candidates)
        return [1.0 / n] * n, "uniform"

    def clone(self) -> UniformPolicy:
        return UniformPolicy(self.slot)
