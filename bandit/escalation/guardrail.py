"""The guardrail: is the new tier's live reward below the old tier's by more than the margin?

Each serving arm keeps its last ``guardrail_window`` rewards (:class:`ArmStats`).
The test is one-sided non-inferiority: roll back when the new arm's mean is
below ``(1 − guardrail_margin)`` × the old arm's by a z-test at
``guardrail_confidence``.  It looks again only when both arms have replaced a
quarter of their window (at least ``guardrail_min_events`` fresh rewards
each): repeated looks at mostly the same rewards would turn the test's error
rate into near-certain false rollbacks over a long promotion.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from bandit.config import EscalationSettings


@dataclass
class ArmStats:
    """Recent rewards of one serving arm, for the guardrail."""

    rewards: deque[float] = field(default_factory=deque)
    total: int = 0  # rewards ever added
    looked: int = 0  # ``total`` at the guardrail's last look

    def add(self, reward: float, window: int) -> None:
        self.rewards.append(reward)
        self.total += 1
        while len(self.rewards) > window:
            self.rewards.popleft()

    @property
    def n(self) -> int:
        return len(self.rewards)

    def mean_var(self) -> tuple[float, float]:
        n = len(self.rewards)
        if n == 0:
            return 0.0, 0.0
        mean = math.fsum(self.rewards) / n
        var = math.fsum((r - mean) ** 2 for r in self.rewards) / max(n - 1, 1)
        return mean, var


def guardrail_breached(
    new: ArmStats | None, old: ArmStats | None, settings: EscalationSettings
) -> dict[str, Any] | None:
    """The test's figures when the new arm is significantly worse than the old one allows, else None.

    Marks both arms as looked at when it looks; does not look (returns None)
    while either arm has fewer than ``guardrail_min_events`` rewards or too
    few fresh ones since the last look.
    """
    need = settings.guardrail_min_events
    if new is None or old is None or new.n < need or old.n < need:
        return None
    gap = max(need, settings.guardrail_window // 4)
    if (new.looked or old.looked) and min(new.total - new.looked, old.total - old.looked) < gap:
        return None
    new.looked, old.looked = new.total, old.total
    m_new, v_new = new.mean_var()
    m_old, v_old = old.mean_var()
    se = math.sqrt(v_new / new.n + v_old / old.n) or 1e-12
    floor = m_old - settings.guardrail_margin * abs(m_old)
    z = (floor - m_new) / se
    if not z > NormalDist().inv_cdf(settings.guardrail_confidence):  # so a NaN never rolls back
        return None
    return {"new_mean": round(m_new, 6), "old_mean": round(m_old, 6), "n_new": new.n, "n_old": old.n, "z": round(z, 3)}
