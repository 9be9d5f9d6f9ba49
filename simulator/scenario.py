"""Simulation scenarios: who the shoppers are and what they really want.

A scenario is a YAML file (``simulator/scenarios/*.yaml``; the reference is
``docs/simulator.md``) written for one store config: it may only name the
config's items, slots and context fields, and its context values must be ones
the config allows.  It is checked in full on load, and every problem names the
scenario file, the line and the field, exactly like config errors.

The truth it describes is hidden from every policy except the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Any

from bandit.config import Condition, ConfigChecker, ContextField, StoreConfig, parse_duration, yamlpos
from bandit.config.yamlpos import ConfigError, Path, Problem

SCENARIO_DIR = FsPath(__file__).parent / "scenarios"
OUTCOMES = ("click", "add_to_cart", "purchase")
DRIFT_KINDS = ("shift", "launch", "sold_out")
CLOCK_KINDS = ("hour", "day_of_week")
DEFAULT_START = "2024-01-01T00:00:00Z"  # a Monday


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class Delay:
    """How long after the page view a shopper event is posted.

    ``kind`` is ``fixed`` (``a`` seconds), ``exponential`` (mean ``a``),
    ``lognormal`` (median ``a``, shape ``b``) or ``uniform`` (``a`` to ``b``).
    """

    kind: str
    a: float
    b: float = 0.0

    def cdf(self, seconds: float) -> float:
        """P(delay ≤ seconds): the share of these events that arrive inside a window of that length."""
        if seconds <= 0:
            return 0.0
        if self.kind == "fixed":
            return 1.0 if self.a <= seconds else 0.0
        if self.kind == "exponential":
            return 1.0 - math.exp(-seconds / self.a)
        if self.kind == "lognormal":
            z = (math.log(seconds) - math.log(self.a)) / self.b
            return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        return (
            min(1.0, max(0.0, (seconds - self.a) / (self.b - self.a))) if self.b > self.a else float(seconds >= self.a)
        )

    def sample(self, rng: Any, size: Any) -> Any:
        """Delays in seconds drawn with numpy generator ``rng``."""
        if self.kind == "fixed":
            return rng.random(size) * 0.0 + self.a  # consumes the stream the same way as the others
        if self.kind == "exponential":
            return rng.exponential(self.a, size)
        if self.kind == "lognormal":
            return self.a * rng.lognormal(0.0, self.b, size)
        return rng.uniform(self.a, self.b, size)


@dataclass(frozen=True)
class Effects:
    """Additive terms on the logit of one outcome.

    ``items`` adds per item id; ``features`` adds per item feature: for a
    category feature per value (``{genre: {rhythm: 0.4}}``), for a bool
    feature when it is true, for a number feature per unit of its value;
    ``base`` (interactions only) for every item.
    """

    items: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, Any] = field(default_factory=dict)
    base: float = 0.0  # added for every item (inside an interaction: e.g. mobile shoppers rarely scroll)


@dataclass(frozen=True)
class Interaction:
    """Effects that apply only when ``conditions`` hold for the shopper (and, optionally, only in ``slots``)."""

    name: str
    conditions: tuple[Condition, ...]
    effects: Effects
    slots: tuple[str, ...] | None = None
    start: str | float | None = None  # set on drift shifts: when the term starts to apply


@dataclass(frozen=True)
class OutcomeModel:
    """P(outcome) = sigmoid(base + position + item effects + matching interactions)."""

    base: float
    positions: Mapping[str, float]
    effects: Effects
    interactions: tuple[Interaction, ...]


@dataclass(frozen=True)
class DriftEvent:
    """Something that changes mid-run: ``at`` is a duration of simulated time or a share of the run (``"50%"``)."""

    at: str | float
    kind: str
    name: str
    item: str | None = None
    shifts: Mapping[str, tuple[Interaction, ...]] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True)
class ShopperField:
    """The distribution of one context field.

    ``kind``: ``choice`` (``values`` with ``weights``), ``bernoulli`` (``p``),
    ``normal`` (``mean``, ``sd``; clipped to the field's range), ``uniform``
    (``low``, ``high``).
    """

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    weights: tuple[float, ...] = ()
    params: tuple[float, float] = (0.0, 0.0)
    integer: bool = False
    bounds: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario (see ``docs/simulator.md``)."""

    name: str
    source: str
    description: str
    store: str | None
    start: float
    pages_per_day: float
    by_hour: tuple[float, ...]
    shoppers: tuple[ShopperField, ...]
    click: OutcomeModel
    add_to_cart: OutcomeModel
    purchase: OutcomeModel
    revenue_feature: str | None
    revenue_fixed: float
    delays: Mapping[str, Delay]
    drift: tuple[DriftEvent, ...]
    events: int


# --------------------------------------------------------------------------- loading


def scenario_path(name_or_path: str | FsPath) -> FsPath:
    """A shipped scenario by name (``vr-store``) or a path to a YAML file."""
    path = FsPath(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | FsPath, config: StoreConfig) -> Scenario:
    """Read and validate a scenario against ``config``.

    Raises
    ------
    ConfigError
        Listing every problem with the scenario file, line and field path.
    """
    path = scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(shipped_scenarios())
        raise ConfigError(
            [Problem(str(path), None, "", f"cannot read: {exc.strerror} (shipped scenarios: {known})")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, "", f"not UTF-8 text: {exc.reason}")]) from None
    return parse_scenario(text, config, str(path))


def parse_scenario(text: str, config: StoreConfig, source: str = "<scenario>") -> Scenario:
    """Parse scenario text written for ``config``; ``source`` names the file in error messages."""
    data, lines = yamlpos.load(text, source)
    checker = _ScenarioChecker(source, lines, config)
    scenario = checker.scenario(data)
    if checker.problems:
        raise ConfigError(checker.problems)
    assert scenario is not None
    return scenario


class _ScenarioChecker(ConfigChecker):
    """Reuses the config checker's helpers (line lookup, mappings, numbers, rule conditions)."""

    def __init__(self, source: str, lines: dict[Path, int], config: StoreConfig):
        super().__init__(source, lines)
        self.config = config
        self.items = set(config.catalog.ids)
        self.slot_names = config.slot_names
        self.features = {f.name: f for f in config.catalog.features}

    def scenario(self, data: Any) -> Scenario | None:
        root = self.mapping(
            data,
            (),
            required=("scenario", "traffic", "shoppers", "truth", "delays"),
            optional=("description", "store", "start", "drift", "events"),
        )
        if root is None:
            return None
        name = self.name(root.get("scenario"), ("scenario",), "scenario name") if "scenario" in root else None
        description = root.get("description", "")
        if not isinstance(description, str):
            self.error(("description",), "must be a string")
            description = ""
        store = root.get("store")
        if store is not None and store != self.config.name:
            self.error(("store",), f"written for store {store!r}, but the config is store {self.config.name!r}")
        start = self.start(root.get("start", DEFAULT_START), ("start",))
        traffic = self.traffic(root.get("traffic"), ("traffic",)) if "traffic" in root else None
        shoppers = self.shoppers(root.get("shoppers"), ("shoppers",)) if "shoppers" in root else None
        truth = self.truth(root.get("truth"), ("truth",)) if "truth" in root else None
        delays = self.delays(root.get("delays"), ("delays",)) if "delays" in root else None
        drift = self.drift(root.get("drift", []), ("drift",))
        events = 100_000
        if "events" in root:
            events = int(self.number(root["events"], ("events",), lo=1, integer=True) or events)
        if self.problems or not (name and traffic and shoppers is not None and truth and delays and start is not None):
            return None
        click, cart, purchase, revenue_feature, revenue_fixed = truth
        return Scenario(
            name=name,
            source=self.source,
            description=description.strip(),
            store=store,
            start=start,
            pages_per_day=traffic[0],
            by_hour=traffic[1],
            shoppers=shoppers,
            click=click,
            add_to_cart=cart,
            purchase=purchase,
            revenue_feature=revenue_feature,
            revenue_fixed=revenue_fixed,
            delays=delays,
            drift=drift,
            events=events,
        )

    # ---- sections ----------------------------------------------------------------

    def start(self, value: Any, path: Path) -> float | None:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.timestamp()
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        self.error(path, "must be an ISO 8601 time such as 2024-01-01T00:00:00Z")
        return None

    def traffic(self, value: Any, path: Path) -> tuple[float, tuple[float, ...]] | None:
        spec = self.mapping(value, path, required=("pages_per_day",), optional=("by_hour",))
        if spec is None or "pages_per_day" not in spec:
            return None
        per_day = self.number(spec["pages_per_day"], (*path, "pages_per_day"), lo=0, lo_open=True)
        by_hour: tuple[float, ...] = (1.0,) * 24
        if "by_hour" in spec:
            raw = spec["by_hour"]
            if not isinstance(raw, list) or len(raw) != 24:
                self.error((*path, "by_hour"), "must be a list of 24 relative weights, hour 0 first")
                return None
            weights = [self.number(w, (*path, "by_hour", i), lo=0) for i, w in enumerate(raw)]
            if any(w is None for w in weights):
                return None
            by_hour = tuple(float(w or 0.0) for w in weights)
            if sum(by_hour) <= 0:
                self.error((*path, "by_hour"), "at least one hour needs traffic")
                return None
        return (per_day, by_hour) if per_day is not None else None

    def shoppers(self, value: Any, path: Path) -> tuple[ShopperField, ...] | None:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of context field to its distribution")
            return None
        schema = self.config.context.by_name
        out = []
        for fname, raw in value.items():
            fpath = (*path, fname)
            spec = schema.get(fname)
            if spec is None:
                self.error(fpath, f"not a context field of the config; fields: {', '.join(schema)}")
                continue
            if spec.kind in CLOCK_KINDS:
                self.error(fpath, f"{spec.kind} fields come from the simulated clock; shape them with traffic.by_hour")
                continue
            shopper = self.shopper_field(spec, raw, fpath)
            if shopper:
                out.append(shopper)
        return tuple(out)

    def shopper_field(self, spec: ContextField, raw: Any, path: Path) -> ShopperField | None:
        if spec.kind == "bool":
            p = self.number(raw, path, lo=0, hi=1)
            return ShopperField(spec.name, "bernoulli", params=(p, 0.0)) if p is not None else None
        if spec.kind == "category":
            if not isinstance(raw, dict) or not raw:
                self.error(path, f"must map values to relative weights, e.g. {{{spec.values[0]}: 0.6, ...}}")
                return None
            values, weights = [], []
            for v, w in raw.items():
                if v not in spec.values:
                    self.error((*path, v), f"unknown value {v!r} for context field; allowed: {', '.join(spec.values)}")
                    continue
                weight = self.number(w, (*path, v), lo=0)
                if weight is not None:
                    values.append(v)
                    weights.append(weight)
            if weights and sum(weights) <= 0:
                self.error(path, "weights must not all be zero")
                return None
            return ShopperField(spec.name, "choice", tuple(values), tuple(weights)) if values else None
        # number / integer
        dist = self.mapping(raw, path, optional=("normal", "uniform"))
        if dist is None:
            return None
        if len(dist) != 1:
            self.error(path, "give exactly one distribution: normal: {mean, sd} or uniform: [low, high]")
            return None
        integer = spec.kind == "integer"
        bounds = (spec.min, spec.max)
        if "normal" in dist:
            params = self.mapping(dist["normal"], (*path, "normal"), required=("mean", "sd"))
            if not params or "mean" not in params or "sd" not in params:
                return None
            mean = self.number(params["mean"], (*path, "normal", "mean"))
            sd = self.number(params["sd"], (*path, "normal", "sd"), lo=0)
            if mean is None or sd is None:
                return None
            return ShopperField(spec.name, "normal", params=(mean, sd), integer=integer, bounds=bounds)
        raw_range = dist["uniform"]
        if not isinstance(raw_range, list) or len(raw_range) != 2:
            self.error((*path, "uniform"), "must be [low, high]")
            return None
        lo = self.number(raw_range[0], (*path, "uniform", 0))
        hi = self.number(raw_range[1], (*path, "uniform", 1))
        if lo is None or hi is None:
            return None
        if lo > hi:
            self.error((*path, "uniform"), f"low ({lo}) is above high ({hi})")
            return None
        for bound, v, i in ((spec.min, lo, 0), (spec.max, hi, 1)):
            if bound is not None and (v < bound if i == 0 else v > bound):
                self.error((*path, "uniform", i), f"outside the field's range [{spec.min}, {spec.max}]")
        return ShopperField(spec.name, "uniform", params=(lo, hi), integer=integer, bounds=bounds)

    def truth(self, value: Any, path: Path) -> tuple[Any, ...] | None:
        spec = self.mapping(value, path, required=("click", "add_to_cart", "purchase", "revenue"))
        if spec is None or any(k not in spec for k in ("click", "add_to_cart", "purchase", "revenue")):
            return None
        models = [self.outcome(spec[k], (*path, k)) for k in OUTCOMES]
        revenue = self.mapping(spec["revenue"], (*path, "revenue"), optional=("feature", "fixed"))
        revenue_feature, revenue_fixed = None, 0.0
        if revenue is not None:
            if len(revenue) != 1:
                self.error((*path, "revenue"), "give one of: feature: <a number item feature> or fixed: <amount>")
            elif "feature" in revenue:
                fname = revenue["feature"]
                fspec = self.features.get(fname) if isinstance(fname, str) else None
                if fspec is None or fspec.kind != "number":
                    numeric = [f for f, s in self.features.items() if s.kind == "number"]
                    self.error((*path, "revenue", "feature"), f"must be a number item feature: {', '.join(numeric)}")
                revenue_feature = fname
            else:
                revenue_fixed = self.number(revenue["fixed"], (*path, "revenue", "fixed"), lo=0) or 0.0
        if any(m is None for m in models) or revenue is None:
            return None
        return (*models, revenue_feature, revenue_fixed)

    def outcome(self, value: Any, path: Path) -> OutcomeModel | None:
        spec = self.mapping(
            value, path, required=("base",), optional=("positions", "items", "features", "interactions")
        )
        if spec is None or "base" not in spec:
            return None
        base = self.number(spec["base"], (*path, "base"))
        positions: dict[str, float] = {}
        raw_positions = spec.get("positions", {})
        if not isinstance(raw_positions, dict):
            self.error((*path, "positions"), "must map slot names to logit offsets")
        else:
            for slot, offset in raw_positions.items():
                if slot not in self.slot_names:
                    self.error((*path, "positions", slot), f"unknown slot; slots: {', '.join(self.slot_names)}")
                    continue
                number = self.number(offset, (*path, "positions", slot))
                if number is not None:
                    positions[slot] = number
        effects = self.effects(spec, path)
        interactions = self.interactions(spec.get("interactions", []), (*path, "interactions"))
        if base is None or effects is None or interactions is None:
            return None
        return OutcomeModel(base, positions, effects, interactions)

    def effects(self, spec: Mapping[str, Any], path: Path, allow_base: bool = False) -> Effects | None:
        items: dict[str, float] = {}
        ok = True
        raw_items = spec.get("items", {})
        if not isinstance(raw_items, dict):
            self.error((*path, "items"), "must map item ids to logit effects")
            ok = False
        else:
            for item, effect in raw_items.items():
                if item not in self.items:
                    self.error((*path, "items", item), "unknown item: not in the config's catalog.items")
                    ok = False
                    continue
                number = self.number(effect, (*path, "items", item))
                if number is None:
                    ok = False
                else:
                    items[item] = number
        features: dict[str, Any] = {}
        raw_features = spec.get("features", {})
        if not isinstance(raw_features, dict):
            self.error((*path, "features"), "must map item features to logit effects")
            return None
        for fname, effect in raw_features.items():
            fpath = (*path, "features", fname)
            fspec = self.features.get(fname)
            if fspec is None:
                self.error(fpath, f"not an item feature of the config; features: {', '.join(self.features)}")
                ok = False
                continue
            if fspec.kind == "category":
                if not isinstance(effect, dict):
                    self.error(fpath, f"must map values of {fname} to effects, e.g. {{{fspec.values[0]}: 0.5}}")
                    ok = False
                    continue
                per_value = {}
                for v, e in effect.items():
                    if v not in fspec.values:
                        self.error((*fpath, v), f"unknown value; allowed: {', '.join(fspec.values)}")
                        ok = False
                        continue
                    number = self.number(e, (*fpath, v))
                    if number is None:
                        ok = False
                    else:
                        per_value[v] = number
                features[fname] = per_value
            else:
                number = self.number(effect, fpath)
                if number is None:
                    ok = False
                else:
                    features[fname] = number
        base = 0.0
        if "base" in spec and allow_base:
            base = self.number(spec["base"], (*path, "base")) or 0.0
        return Effects(items, features, base) if ok else None

    def interactions(self, value: Any, path: Path, start: float | str | None = None) -> tuple[Interaction, ...] | None:
        out = []
        ok = True
        for i, raw in enumerate(self.listing(value, path)):
            ipath = (*path, i)
            spec = self.mapping(raw, ipath, optional=("name", "when", "slots", "base", "items", "features"))
            if spec is None:
                ok = False
                continue
            name = self.name(spec.get("name", f"interaction-{i + 1}"), (*ipath, "name"), "interaction name")
            conditions: tuple[Condition, ...] | None = ()
            if "when" in spec:
                conditions = self.when(spec["when"], (*ipath, "when"), self.config.context)
            slots = None
            if "slots" in spec:
                raw_slots = spec["slots"]
                raw_slots = [raw_slots] if isinstance(raw_slots, str) else raw_slots
                if not isinstance(raw_slots, list) or not raw_slots:
                    self.error((*ipath, "slots"), "must be a slot name or a list of slot names")
                    ok = False
                else:
                    for j, s in enumerate(raw_slots):
                        if s not in self.slot_names:
                            self.error((*ipath, "slots", j), f"unknown slot {s!r}; slots: {', '.join(self.slot_names)}")
                            ok = False
                    slots = tuple(raw_slots)
            effects = self.effects(spec, ipath, allow_base=True)
            if not {"items", "features", "base"} & set(spec):
                self.error(ipath, "an interaction needs a base, items and/or features effect")
                ok = False
            if name is None or conditions is None or effects is None:
                ok = False
                continue
            out.append(Interaction(name, conditions, effects, slots, start))
        return tuple(out) if ok else None

    def delays(self, value: Any, path: Path) -> dict[str, Delay] | None:
        spec = self.mapping(value, path, required=OUTCOMES)
        if spec is None:
            return None
        out = {}
        for outcome in OUTCOMES:
            if outcome in spec:
                delay = self.delay(spec[outcome], (*path, outcome))
                if delay:
                    out[outcome] = delay
        return out if len(out) == len(OUTCOMES) else None

    def delay(self, value: Any, path: Path) -> Delay | None:
        spec = self.mapping(value, path, optional=("fixed", "exponential", "lognormal", "uniform"))
        if spec is None:
            return None
        if len(spec) != 1:
            self.error(path, "give exactly one of: fixed: 30s, exponential: 5m (mean), lognormal: {median, sigma}, "
                       "uniform: [1m, 1h]")  # fmt: skip
            return None
        kind, raw = next(iter(spec.items()))
        kpath = (*path, kind)
        if kind in ("fixed", "exponential"):
            seconds = self.duration(raw, kpath)
            return Delay(kind, seconds) if seconds else None
        if kind == "lognormal":
            params = self.mapping(raw, kpath, required=("median", "sigma"))
            if not params or "median" not in params or "sigma" not in params:
                return None
            median = self.duration(params["median"], (*kpath, "median"))
            sigma = self.number(params["sigma"], (*kpath, "sigma"), lo=0, lo_open=True)
            return Delay(kind, median, sigma) if median and sigma else None
        if not isinstance(raw, list) or len(raw) != 2:
            self.error(kpath, "must be [shortest, longest], e.g. [1m, 2h]")
            return None
        lo, hi = self.duration(raw[0], (*kpath, 0)), self.duration(raw[1], (*kpath, 1))
        if lo is None or hi is None:
            return None
        if lo > hi:
            self.error(kpath, "shortest is above longest")
            return None
        return Delay(kind, lo, hi)

    def drift(self, value: Any, path: Path) -> tuple[DriftEvent, ...]:
        out = []
        launched: set[str] = set()
        for i, raw in enumerate(self.listing(value, path)):
            dpath = (*path, i)
            spec = self.mapping(raw, dpath, required=("at", "kind"), optional=("name", "item", *OUTCOMES))
            if spec is None or "at" not in spec or "kind" not in spec:
                continue
            at = self.moment(spec["at"], (*dpath, "at"))
            kind = spec["kind"]
            name = self.name(spec.get("name", f"{kind}-{i + 1}"), (*dpath, "name"), "drift name")
            if kind not in DRIFT_KINDS:
                self.error((*dpath, "kind"), f"unknown drift kind {kind!r}; use one of: {', '.join(DRIFT_KINDS)}")
                continue
            item = None
            shifts: dict[str, tuple[Interaction, ...]] = {}
            if kind in ("launch", "sold_out"):
                item = spec.get("item")
                if item not in self.items:
                    self.error((*dpath, "item"), f"a {kind} names one item of the config's catalog (got {item!r})")
                    continue
                if kind == "launch":
                    if item in launched:
                        self.error((*dpath, "item"), f"item {item!r} is launched twice")
                    launched.add(item)
                for outcome in OUTCOMES:
                    if outcome in spec:
                        self.error((*dpath, outcome), "only a shift changes preferences")
            else:
                if "item" in spec:
                    self.error(
                        (*dpath, "item"), "a shift has no item; put item effects under click/add_to_cart/purchase"
                    )
                for outcome in OUTCOMES:
                    if outcome in spec:
                        terms = self.interactions(spec[outcome], (*dpath, outcome), start=at)
                        if terms:
                            shifts[outcome] = terms
                if not any(o in spec for o in OUTCOMES):
                    self.error(dpath, "a shift needs a list of interactions under click, add_to_cart or purchase")
            if at is not None and name is not None:
                out.append(DriftEvent(at, kind, name, item, shifts, self.line(dpath)))
        return tuple(out)

    def moment(self, value: Any, path: Path) -> str | float | None:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                share = float(value.strip()[:-1])
            except ValueError:
                share = -1.0
            if not 0 <= share <= 100:
                self.error(path, "a share of the run must be between 0% and 100%")
                return None
            return value.strip()
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, f"{exc}; or a share of the run such as 50%")
            return None


def resolve_moment(at: str | float | None, events: int, start: float, times_of: Any) -> float:
    """Simulated time (epoch seconds) of a drift moment for a run of ``events`` pages."""
    if at is None:
        return -math.inf
    if isinstance(at, str):
        share = float(at[:-1]) / 100.0
        index = min(events - 1, max(0, round(share * events)))
        return float(times_of(index))
    return start + float(at)
