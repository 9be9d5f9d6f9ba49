"""The hidden truth of a scenario, compiled to numpy, and the shoppers it describes.

For a batch of page views it gives, per (page, item, slot), the probability
of a click, of an add-to-cart given the click, of a purchase given the
add-to-cart, and the *expected credited reward*: what the config's reward
rule pays on average, counting only events that arrive inside the reward
window.  With on-time shares ``q`` (from the scenario's delay distributions),
weights ``w`` and revenue ``r``::

    E = pc·qc·wc + pc·pa·qa·wa + pc·pa·pb·qp·(wp + revenue_weight·r) + default·P(nothing credited)

Delays do not depend on the item, so ranking items by ``E`` is ranking them by
what a policy can actually earn.  The oracle reads ``E``; nobody else does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.config import StoreConfig
from simulator.clock import hours_and_days
from simulator.scenario import OUTCOMES, Effects, Interaction, OutcomeModel, Scenario, resolve_moment


@dataclass
class TruthBatch:
    """Truth for ``B`` pages: arrays of shape ``(B, items, slots)``."""

    p_click: np.ndarray
    p_cart: np.ndarray
    p_buy: np.ndarray
    expected: np.ndarray


class _Term:
    __slots__ = ("conditions", "slot_mask", "start", "vector")

    def __init__(self, conditions: tuple[Any, ...], vector: np.ndarray, slot_mask: np.ndarray | None, start: float):
        self.conditions = conditions
        self.vector = vector
        self.slot_mask = slot_mask
        self.start = start


class _Model:
    """One outcome's logit: a static (item, slot) table plus context-dependent terms."""

    def __init__(self, static: np.ndarray, terms: list[_Term]):
        self.static = static
        self.terms = terms

    def probabilities(self, contexts: Sequence[Mapping[str, Any]], times: np.ndarray) -> np.ndarray:
        logit = np.broadcast_to(self.static, (len(contexts), *self.static.shape)).copy()
        for term in self.terms:
            if term.conditions:
                mask = np.fromiter(
                    (all(c.matches(ctx) for c in term.conditions) for ctx in contexts), dtype=bool, count=len(contexts)
                )
            else:
                mask = np.ones(len(contexts), dtype=bool)
            mask &= times >= term.start
            if not mask.any():
                continue
            effect = term.vector[:, None] if term.slot_mask is None else term.vector[:, None] * term.slot_mask[None, :]
            logit[mask] += effect
        return 1.0 / (1.0 + np.exp(-logit))


class Truth:
    """The scenario's truth for one store config and one run length.

    Parameters
    ----------
    scenario, config
        The parsed scenario and the config it was validated against.
    events
        Run length in pages (drift moments given as a share of the run need it).
    time_of
        Page index → simulated epoch seconds (:meth:`simulator.clock.Schedule.time_of`).
    """

    def __init__(self, scenario: Scenario, config: StoreConfig, events: int, time_of: Callable[[int], float]):
        self.scenario = scenario
        self.config = config
        self.items = config.catalog.ids
        self.slots = config.slot_names
        self.item_index = {item: i for i, item in enumerate(self.items)}
        self.slot_index = {slot: s for s, slot in enumerate(self.slots)}
        self.window = config.reward.window_seconds

        def moment(at: Any) -> float:
            return resolve_moment(at, events, scenario.start, time_of)

        shifts: dict[str, list[Interaction]] = {o: [] for o in OUTCOMES}
        self.changes: list[tuple[float, str, str]] = []  # (time, kind, item), time-ordered
        self.drift_times: list[tuple[float, str, str]] = []
        for drift in scenario.drift:
            at = moment(drift.at)
            self.drift_times.append((at, drift.kind, drift.name))
            if drift.kind == "shift":
                for outcome, terms in drift.shifts.items():
                    shifts[outcome].extend(terms)
            elif drift.item is not None:
                self.changes.append((at, drift.kind, drift.item))
        self.changes.sort()
        self.models = {
            outcome: self._compile(getattr(scenario, outcome), shifts[outcome], moment) for outcome in OUTCOMES
        }
        catalog = config.catalog
        if scenario.revenue_feature:
            self.revenue = np.array([float(item.features.get(scenario.revenue_feature, 0.0)) for item in catalog.items])
        else:
            self.revenue = np.full(len(self.items), scenario.revenue_fixed)
        self.on_time = {o: scenario.delays[o].cdf(self.window) for o in OUTCOMES}
        events_weights = config.reward.events
        self.weights = {o: events_weights.get(o, 0.0) for o in OUTCOMES}
        self.launched_later = {item for _, kind, item in self.changes if kind == "launch"}

    # ---- compilation ------------------------------------------------------------

    def _vector(self, effects: Effects) -> np.ndarray:
        out = np.zeros(len(self.items))
        for i, item in enumerate(self.config.catalog.items):
            total = effects.base + effects.items.get(item.id, 0.0)
            for fname, effect in effects.features.items():
                value = item.features.get(fname)
                if value is None:
                    continue
                if isinstance(effect, Mapping):
                    total += effect.get(value, 0.0)
                elif isinstance(value, bool):
                    total += effect if value else 0.0
                else:
                    total += effect * float(value)
            out[i] = total
        return out

    def _compile(self, model: OutcomeModel, shifts: list[Interaction], moment: Callable[[Any], float]) -> _Model:
        positions = np.array([model.positions.get(slot, 0.0) for slot in self.slots])
        static = model.base + self._vector(model.effects)[:, None] + positions[None, :]
        terms = []
        for term in (*model.interactions, *shifts):
            mask = None
            if term.slots is not None:
                mask = np.array([1.0 if slot in term.slots else 0.0 for slot in self.slots])
            terms.append(_Term(term.conditions, self._vector(term.effects), mask, moment(term.start)))
        return _Model(static, terms)

    # ---- evaluation ---------------------------------------------------------------

    def evaluate(self, contexts: Sequence[Mapping[str, Any]], times: np.ndarray) -> TruthBatch:
        """Probabilities and expected credited reward for a batch of pages."""
        pc = self.models["click"].probabilities(contexts, times)
        pa = self.models["add_to_cart"].probabilities(contexts, times)
        pb = self.models["purchase"].probabilities(contexts, times)
        return TruthBatch(pc, pa, pb, self.expected_reward(pc, pa, pb))

    def expected_reward(self, pc: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        q, w = self.on_time, self.weights
        purchase_value = w["purchase"] + self.config.reward.revenue_weight * self.revenue[:, None]
        credited = pc * q["click"] * w["click"] + pc * pa * (
            q["add_to_cart"] * w["add_to_cart"] + pb * q["purchase"] * purchase_value
        )
        default = self.config.reward.default
        if default:
            nothing = (1 - pc) + pc * (1 - q["click"]) * (
                (1 - pa) + pa * (1 - q["add_to_cart"]) * ((1 - pb) + pb * (1 - q["purchase"]))
            )
            credited = credited + default * nothing
        return credited

    def available(self, moment: float) -> tuple[str, ...]:
        """Catalog items in stock at ``moment``: launched (if they launch later) and not sold out."""
        gone = set(self.launched_later)
        for at, kind, item in self.changes:
            if at > moment:
                break
            if kind == "launch":
                gone.discard(item)
            else:
                gone.add(item)
        return tuple(item for item in self.items if item not in gone)

    def availability_epochs(self) -> list[float]:
        """Moments at which :meth:`available` changes."""
        return [at for at, _, _ in self.changes]


class Shoppers:
    """Draws shopper contexts: scenario distributions, clock fields, then the config's defaults."""

    def __init__(self, scenario: Scenario, config: StoreConfig):
        self.fields = scenario.shoppers
        self.schema = config.context
        self.hour_fields = [f.name for f in config.context.fields if f.kind == "hour"]
        self.day_fields = [f.name for f in config.context.fields if f.kind == "day_of_week"]

    def sample(self, rng: np.random.Generator, times: np.ndarray) -> list[dict[str, Any]]:
        n = len(times)
        columns: list[tuple[str, list[Any]]] = []
        for spec in self.fields:
            if spec.kind == "choice":
                weights = np.asarray(spec.weights, dtype=float)
                picks = rng.choice(len(spec.values), size=n, p=weights / weights.sum())
                values = [spec.values[k] for k in picks.tolist()]
            elif spec.kind == "bernoulli":
                values = (rng.random(n) < spec.params[0]).tolist()
            else:
                if spec.kind == "normal":
                    raw = rng.normal(spec.params[0], spec.params[1], n)
                else:
                    raw = rng.uniform(spec.params[0], spec.params[1], n)
                lo, hi = spec.bounds
                raw = np.clip(raw, -np.inf if lo is None else lo, np.inf if hi is None else hi)
                values = np.rint(raw).astype(np.int64).tolist() if spec.integer else np.round(raw, 6).tolist()
            columns.append((spec.name, values))
        if self.hour_fields or self.day_fields:
            hours, days = hours_and_days(times)
            columns.extend((name, hours) for name in self.hour_fields)
            columns.extend((name, days) for name in self.day_fields)
        out = []
        normalise = self.schema.normalise
        names = [name for name, _ in columns]
        for row in zip(*(values for _, values in columns), strict=True) if columns else ([()] * n):
            context, problems = normalise(dict(zip(names, row, strict=True)))
            if problems:  # pragma: no cover - the scenario was validated against the schema
                raise ValueError(f"simulated context is invalid: {problems}")
            out.append(context)
        return out
