"""Off-policy evaluation: what would a different policy have earned on the logged traffic?

Notation, for logged rounds ``i = 1..n``: context ``x_i``, chosen item ``a_i``
drawn by the logging policy ``μ`` with propensity ``μ(a_i|x_i) > 0``, reward
``r_i``; the target policy ``π`` gives ``π(a|x)``; ``q̂(x, a)`` is a reward model;
the importance weight is ``w_i = π(a_i|x_i) / μ(a_i|x_i)``, optionally clipped
at ``M``: ``min(w_i, M)``.

=========  =========================================================================
IPS        ``V̂ = 1/n Σ w_i r_i``  — unbiased when μ covers π (Horvitz & Thompson 1952)
SNIPS      ``V̂ = Σ w_i r_i / Σ w_i``  — self-normalised; slightly biased, far lower
           variance (Swaminathan & Joachims, NeurIPS 2015)
DM         ``V̂ = 1/n Σ_i Σ_a π(a|x_i) q̂(x_i, a)``  — no weights; biased by the model
DR         ``V̂ = 1/n Σ_i [Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i - q̂(x_i, a_i))]``
           — unbiased if either the weights or the model are right (Dudík, Langford
           & Li, ICML 2011)
=========  =========================================================================

Every estimate comes with a confidence interval (normal approximation over the
per-round terms, with the delta method for SNIPS; or a seeded percentile
bootstrap), the effective sample size ``ESS = (Σ w_i)² / Σ w_i²`` (Kish), the
largest weight, how many weights were clipped, and the probability mass the
target puts on items the logging policy never could have shown (``unsupported
mass``): where that is not zero no estimator here can be trusted, and the
number says so instead of hiding it.

A comparison of two policies on the same log (:func:`lift`) uses the paired
per-round differences, which is far tighter than comparing two separate
intervals.  See also Saito et al., "Open Bandit Dataset and Pipeline" (2021).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import ClassVar

import numpy as np

_FLOAT = np.float64


@dataclass(frozen=True)
class OffPolicyData:
    """Per-round arrays an estimator needs, for one slot.

    Attributes
    ----------
    reward
        ``r_i``.
    propensity
        ``μ(a_i|x_i)``, each in (0, 1].
    target_prob
        ``π(a_i|x_i)``, each in [0, 1].
    q_chosen
        ``q̂(x_i, a_i)`` (DM and DR only).
    q_target
        ``Σ_a π(a|x_i) q̂(x_i, a)`` over the round's candidates (DM and DR only).
    unsupported_mass
        ``Σ_a π(a|x_i)`` over candidates with ``μ(a|x_i) = 0`` when the full
        logged vector is known; ``None`` when only the chosen propensity is.
    """

    reward: np.ndarray
    propensity: np.ndarray
    target_prob: np.ndarray
    q_chosen: np.ndarray | None = None
    q_target: np.ndarray | None = None
    unsupported_mass: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("reward", "propensity", "target_prob", "q_chosen", "q_target", "unsupported_mass"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=_FLOAT)
            object.__setattr__(self, name, array)
            if array.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name}: contains NaN or infinity")
        if n == 0:
            raise ValueError("reward: no logged rounds")
        if np.any(self.propensity <= 0) or np.any(self.propensity > 1):
            bad = int(np.argmax((self.propensity <= 0) | (self.propensity > 1)))
            raise ValueError(f"propensity: must be in (0, 1]; round {bad} has {self.propensity[bad]}")
        if np.any(self.target_prob < 0) or np.any(self.target_prob > 1 + 1e-9):
            raise ValueError("target_prob: must be in [0, 1]")

    @property
    def n(self) -> int:
        return len(self.reward)

    def subset(self, index: np.ndarray) -> OffPolicyData:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return OffPolicyData(
            self.reward[index], self.propensity[index], self.target_prob[index],
            pick(self.q_chosen), pick(self.q_target), pick(self.unsupported_mass),
        )  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """A value with its interval and the diagnostics that say how far to trust it."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    ess: float
    max_weight: float
    clipped: int
    unsupported_mass: float | None
    ci_method: str
    confidence: float

    @property
    def stderr(self) -> float:
        return (self.ci_high - self.ci_low) / (2 * NormalDist().inv_cdf(0.5 + self.confidence / 2))

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {k: (round(v, 10) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Estimator(ABC):
    """Base: an estimator is a small immutable object; ``estimate`` validates and delegates.

    Parameters
    ----------
    clip
        Clip importance weights at this value (``None``: no clipping).
        Clipping trades a little bias for a lot less variance.
    confidence
        Coverage of the interval, e.g. 0.95.
    ci
        ``"normal"`` or ``"bootstrap"``.
    bootstrap_samples, seed
        For the bootstrap interval.
    """

    clip: float | None = None
    confidence: float = 0.95
    ci: str = "normal"
    bootstrap_samples: int = 500
    seed: int = 0
    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.clip is not None and not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip: must be a positive number, got {self.clip!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence: must be in (0, 1), got {self.confidence!r}")
        if self.ci not in ("normal", "bootstrap"):
            raise ValueError(f"ci: must be 'normal' or 'bootstrap', got {self.ci!r}")
        if self.bootstrap_samples < 50:
            raise ValueError("bootstrap_samples: use at least 50")

    def weights(self, data: OffPolicyData) -> tuple[np.ndarray, int]:
        w = data.target_prob / data.propensity
        if self.clip is None:
            return w, 0
        return np.minimum(w, self.clip), int(np.sum(w > self.clip))

    def terms(self, data: OffPolicyData) -> np.ndarray:
        """Per-round contributions whose mean is the estimate (ratio estimators override ``value``)."""
        if self.needs_model and (data.q_chosen is None or data.q_target is None):
            raise ValueError(f"{self.name}: needs a reward model (q_chosen and q_target)")
        return self._terms(data, self.weights(data)[0])

    @abstractmethod
    def _terms(self, data: OffPolicyData, w: np.ndarray) -> np.ndarray:
        """Per-round contributions given the (clipped) weights ``w``."""

    def value(self, data: OffPolicyData) -> float:
        return float(np.mean(self.terms(data)))

    def _normal_halfwidth(self, data: OffPolicyData) -> float:
        terms = self.terms(data)
        if data.n < 2:
            return math.inf
        return float(NormalDist().inv_cdf(0.5 + self.confidence / 2) * np.std(terms, ddof=1) / math.sqrt(data.n))

    def estimate(self, data: OffPolicyData) -> Estimate:
        w_raw = data.target_prob / data.propensity
        w, clipped = self.weights(data)
        value = self.value(data)
        if self.ci == "normal":
            half = self._normal_halfwidth(data)
            low, high = value - half, value + half
        else:
            low, high = bootstrap_interval(self.value, data, self.confidence, self.bootstrap_samples, self.seed)
        total = float(np.sum(w))
        ess = total * total / float(np.sum(w * w)) if total > 0 else 0.0
        unsupported = None if data.unsupported_mass is None else float(np.mean(data.unsupported_mass))
        return Estimate(
            self.name, value, low, high, data.n, ess, float(np.max(w_raw)), clipped, unsupported, self.ci,
            self.confidence,
        )  # fmt: skip


@dataclass(frozen=True)
class IPS(Estimator):
    """Inverse propensity scoring: ``V̂ = 1/n Σ w_i r_i``.

    >>> data = OffPolicyData(reward=[1.0, 0.0], propensity=[0.5, 0.5], target_prob=[1.0, 0.0])
    >>> IPS().value(data)
    1.0
    """

    name: ClassVar[str] = "ips"

    def _terms(self, data: OffPolicyData, w: np.ndarray) -> np.ndarray:
        return w * data.reward


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalised IPS: ``V̂ = Σ w_i r_i / Σ w_i``; its interval uses the delta method.

    >>> data = OffPolicyData(reward=[1.0, 0.0], propensity=[0.5, 0.5], target_prob=[1.0, 0.0])
    >>> SNIPS().value(data)
    1.0
    """

    name: ClassVar[str] = "snips"

    def _terms(self, data: OffPolicyData, w: np.ndarray) -> np.ndarray:
        mean_w = float(np.mean(w))
        return w * data.reward / mean_w if mean_w > 0 else np.zeros_like(w)

    def _normal_halfwidth(self, data: OffPolicyData) -> float:
        w, _ = self.weights(data)
        mean_w = float(np.mean(w))
        if data.n < 2 or mean_w <= 0:
            return math.inf
        value = float(np.sum(w * data.reward) / np.sum(w))
        # Linearisation of the ratio: Var ≈ Var(w (r - V̂)) / (n · mean(w)²).
        residual = w * (data.reward - value) / mean_w
        z = NormalDist().inv_cdf(0.5 + self.confidence / 2)
        return float(z * np.std(residual, ddof=1) / math.sqrt(data.n))


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: ``V̂ = 1/n Σ_i Σ_a π(a|x_i) q̂(x_i, a)``.

    Its interval reflects only the spread over contexts, not the model's bias.
    """

    name: ClassVar[str] = "dm"
    needs_model: ClassVar[bool] = True

    def _terms(self, data: OffPolicyData, w: np.ndarray) -> np.ndarray:
        assert data.q_target is not None
        return data.q_target


@dataclass(frozen=True)
class DR(Estimator):
    """Doubly robust: ``V̂ = 1/n Σ_i [Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))]``.

    >>> data = OffPolicyData(reward=[1.0, 0.0], propensity=[0.5, 0.5], target_prob=[1.0, 0.0],
    ...                      q_chosen=[1.0, 0.0], q_target=[1.0, 1.0])
    >>> DR().value(data)   # the model is exact on the chosen items: DR = DM
    1.0
    """

    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def _terms(self, data: OffPolicyData, w: np.ndarray) -> np.ndarray:
        assert data.q_target is not None and data.q_chosen is not None
        return data.q_target + w * (data.reward - data.q_chosen)


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (IPS, SNIPS, DM, DR)}


def bootstrap_interval(
    statistic: object, data: OffPolicyData, confidence: float, samples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap of ``statistic(data)`` over rounds resampled with replacement (seeded)."""
    assert callable(statistic)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for b in range(samples):
        values[b] = statistic(data.subset(rng.integers(0, data.n, data.n)))
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


@dataclass(frozen=True)
class Lift:
    """Target minus incumbent on the same rounds, with a paired interval."""

    estimator: str
    target: float
    incumbent: float
    lift: float
    ci_low: float
    ci_high: float
    n: int
    relative: float | None = field(default=None)

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {k: (round(v, 10) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def lift(estimator: Estimator, target: OffPolicyData, incumbent: OffPolicyData) -> Lift:
    """Estimated value of ``target`` minus ``incumbent``, from per-round paired differences.

    Both data sets must describe the same logged rounds (same rewards and
    propensities), differing only in the evaluated policy's probabilities
    and model terms.  For SNIPS the difference of the two ratios is used,
    with the interval from the linearised terms.
    """
    if target.n != incumbent.n or not np.array_equal(target.reward, incumbent.reward):
        raise ValueError("target and incumbent must be evaluated on the same logged rounds")
    t_value, i_value = estimator.value(target), estimator.value(incumbent)
    if isinstance(estimator, SNIPS):

        def linear(d: OffPolicyData) -> np.ndarray:
            w, _ = estimator.weights(d)
            v = float(np.sum(w * d.reward) / np.sum(w))
            return v + w * (d.reward - v) / float(np.mean(w))

        diff = linear(target) - linear(incumbent)
    else:
        diff = estimator.terms(target) - estimator.terms(incumbent)
    z = NormalDist().inv_cdf(0.5 + estimator.confidence / 2)
    half = z * float(np.std(diff, ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    delta = t_value - i_value
    relative = delta / abs(i_value) if i_value else None
    return Lift(estimator.name, t_value, i_value, delta, delta - half, delta + half, target.n, relative)
