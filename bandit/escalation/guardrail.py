"""The guardrail: is the new tier's live reward below the old tier's by more than the margin?

Each serving arm keeps its last ``guardrail_window`` rewards (:class:`ArmStats`).
The test is one-sided non-inferiority: roll back when the new arm's mean is
below ``(1 − guardrail_margin)`` × the old arm's by a z-test at
``guardrail_confidence``.  It looks again only when both arms have replaced a
quarter of their window (at least ``guardrail_min_events`` fresh rewards
each): repeated looks at mostly the same rewards would turn the test's error
rate into near-certain false rollbacks over a long promotion.

After a promotion the test uses every decision, not only the holdout's
(:class:`ControlPool`): each decision logs every serving arm's probability of
the item it served, so ``π_arm(a|x) / μ(a|x)`` (``μ`` the logged mixture)
weights its reward into an unbiased estimate of each arm's value.  Where the
new tier and the old would show the same item, which late in a promotion is
most contexts, the old tier's weight is near 1, so a thin holdout is worth
several times its share to the test (its effective share, ``1 / E[w²]``, is
never below the holdout's own: ``w ≤ 1 / holdout``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

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


class ControlPool:
    """The rewards of the last decisions of a promoted slot, with the new and the old tier's importance weights.

    Each tier is read over the newest decisions that give it an effective
    sample (``(Σw)² / Σw²``) of ``guardrail_window`` rewards, so the test sees
    as much of the old tier as the holdout-only test would in a window of that
    many holdout rewards, from fewer decisions, and the new tier over about as
    many recent decisions as before.  ``capacity`` bounds the memory
    (``guardrail_window / holdout`` always suffices: the old tier's effective
    share is at least the holdout's).
    """

    def __init__(self, new: str, old: str, capacity: int):
        self.new, self.old, self.capacity = new, old, max(int(capacity), 1)
        self.data = np.zeros((3, self.capacity))  # reward, new tier's weight, old tier's weight; a ring
        self.total = 0  # decisions ever added
        self.checked = 0  # ``total`` when the test last tried to look (it needs enough of the old tier)
        self.looked = 0  # ``total`` at the last look
        self.window = 0  # decisions in the window at the last look

    def add(self, reward: float, propensity: float, arms: Mapping[str, float] | None) -> None:
        """One decision: skipped unless it logged both tiers' probabilities of its item."""
        if not arms or self.new not in arms or self.old not in arms or not propensity > 0:
            return
        self.data[:, self.total % self.capacity] = (reward, arms[self.new] / propensity, arms[self.old] / propensity)
        self.total += 1

    @property
    def n(self) -> int:
        return min(self.total, self.capacity)

    def newest(self) -> np.ndarray:
        """The pool, newest decision first (3 × n)."""
        end = self.total % self.capacity
        if self.total <= self.capacity:
            return self.data[:, : self.total][:, ::-1]
        return np.concatenate([self.data[:, :end][:, ::-1], self.data[:, end:][:, ::-1]], axis=1)

    def copy(self) -> ControlPool:
        out = ControlPool(self.new, self.old, self.capacity)
        out.data, out.total, out.checked = self.data.copy(), self.total, self.checked
        out.looked, out.window = self.looked, self.window
        return out


def _window(weights: np.ndarray, window: int) -> tuple[int, float]:
    """The newest decisions whose weights make an effective sample ``(Σw)² / Σw²`` of ``window`` (all, if fewer),
    and that effective sample; ``weights`` newest first."""
    ess = np.cumsum(weights) ** 2 / np.maximum(np.cumsum(weights * weights), 1e-300)
    reached = np.flatnonzero(ess >= window)
    m = int(reached[0]) + 1 if reached.size else len(weights)
    return m, float(ess[m - 1])


def control_estimate(pool: ControlPool, window: int, margin: float = 0.0) -> dict[str, float] | None:
    """Both tiers' values, each over the newest decisions worth ``window`` of its own effective rewards.

    Self-normalised importance-weighted means (SNIPS): ``new`` over the
    newest ``decisions_new`` decisions, ``old`` over the newest ``decisions``
    (the old tier's weights are thinner, so its window reaches further back,
    and the new tier's recent reward is not diluted by older decisions, as
    each arm had its own window before), the old tier's effective sample
    ``ess_old``, and ``se``: the standard error of ``new − (1 − margin) ×
    old`` by the delta method, with the covariance of the two means on the
    decisions both windows read.  None when the pool is empty or a tier has
    no weight in it.
    """
    rewards, w_new, w_old = pool.newest()
    if not len(rewards):
        return None
    m_a, _ = _window(w_new, window)
    m_b, ess_old = _window(w_old, window)
    a, b = w_new[:m_a], w_old[:m_b]
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if not (mean_a > 0 and mean_b > 0):
        return None
    with np.errstate(all="ignore"):  # a non-finite reward gives a NaN z, which never rolls back
        m_new = float(np.dot(a, rewards[:m_a])) / (mean_a * m_a)
        m_old = float(np.dot(b, rewards[:m_b])) / (mean_b * m_b)
        keep = 1.0 - margin * (1.0 if m_old >= 0 else -1.0)  # (1 − margin) × old is old − margin·|old|
        psi_a = a * (rewards[:m_a] - m_new) / mean_a / m_a  # each decision's share of each mean's error
        psi_b = keep * b * (rewards[:m_b] - m_old) / mean_b / m_b
        shared = min(m_a, m_b)
        variance = np.dot(psi_a, psi_a) + np.dot(psi_b, psi_b) - 2 * np.dot(psi_a[:shared], psi_b[:shared])
        se = math.sqrt(max(float(variance), 0.0))
    return {"new": m_new, "old": m_old, "keep": keep, "se": se, "decisions": m_b, "decisions_new": m_a,
            "ess_old": ess_old}  # fmt: skip


def control_breached(pool: ControlPool, settings: EscalationSettings) -> dict[str, Any] | None:
    """The guardrail's test on every decision of a promoted slot (see :class:`ControlPool`); None: no breach.

    The z-test of ``(1 − margin) × old − new`` on :func:`control_estimate`.
    It looks when the old tier's effective sample reaches
    ``guardrail_min_events`` (trying every ``guardrail_min_events`` decisions)
    and, after a look, once a quarter of the last look's window of the old
    tier is new decisions (the new tier's shorter window is then all new).
    """
    gap = max(settings.guardrail_min_events, pool.window // 4) if pool.looked else settings.guardrail_min_events
    if pool.total - pool.checked < gap:
        return None
    pool.checked = pool.total
    estimate = control_estimate(pool, settings.guardrail_window, settings.guardrail_margin)
    if estimate is None or estimate["ess_old"] < settings.guardrail_min_events:
        return None
    pool.looked, pool.window = pool.total, int(estimate["decisions"])
    z = (estimate["keep"] * estimate["old"] - estimate["new"]) / (estimate["se"] or 1e-12)
    if not z > NormalDist().inv_cdf(settings.guardrail_confidence):  # so a NaN never rolls back
        return None
    return {"new_mean": round(estimate["new"], 6), "old_mean": round(estimate["old"], 6), "decisions": pool.window,
            "decisions_new": int(estimate["decisions_new"]), "effective_old": round(estimate["ess_old"], 1),
            "z": round(z, 3)}  # fmt: skip
