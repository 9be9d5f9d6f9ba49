"""The store config as frozen, typed objects: catalog, context schema, rules, slots, reward, constraints.

Built once by :mod:`bandit.config.parse` and never mutated; every other part of
the library reads these.  See ``docs/config.md`` for the reference of every key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bandit.config.settings import (
    ColdStartSettings,
    EscalationSettings,
    ExposureSettings,
    GradientSettings,
    TreeSettings,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CONTEXT_KINDS = ("category", "number", "integer", "bool", "hour", "day_of_week")
FEATURE_KINDS = ("category", "number", "bool")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds in a duration such as ``"30m"``, ``"7d"`` or a bare number of seconds.

    >>> parse_duration("30m"), parse_duration("7d"), parse_duration(1.5)
    (1800.0, 604800.0, 1.5)
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30m or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use a number with a unit: 500ms, 45s, 30m, 2h, 7d, 1w")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


@dataclass(frozen=True)
class FeatureSpec:
    """A typed item feature declared under ``catalog.features``."""

    name: str
    kind: str
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Item:
    """A catalog item: what a slot can show."""

    id: str
    publisher: str
    features: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    title: str = ""


@dataclass(frozen=True)
class Catalog:
    features: tuple[FeatureSpec, ...]
    items: tuple[Item, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    def item(self, item_id: str) -> Item:
        return self._by_id[item_id]

    @property
    def _by_id(self) -> dict[str, Item]:
        cached = self.__dict__.get("_by_id_cache")
        if cached is None:
            cached = {item.id: item for item in self.items}
            object.__setattr__(self, "_by_id_cache", cached)
        return cached

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_id


@dataclass(frozen=True)
class ContextField:
    """A typed field of the shopper context sent with ``/v1/rank``.

    ``hour`` and ``day_of_week`` fields default to the server's clock in UTC
    when ``default: now`` is set and the request leaves them out.
    """

    name: str
    kind: str
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    required: bool = False
    default: Any = None

    def coerce(self, value: Any) -> Any:
        """The normalised value, or raise ``ValueError`` saying what is allowed."""
        kind = self.kind
        if kind == "category":
            if isinstance(value, str) and value in self._allowed:
                return value
            if not isinstance(value, str):
                raise ValueError(f"must be a string, one of: {', '.join(self.values)}")
            raise ValueError(f"unknown value {value!r}; allowed: {', '.join(self.values)}")
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError("must be true or false")
        if kind == "day_of_week":
            if isinstance(value, str) and value.lower() in _DAY_NAMES:
                return _DAY_NAMES[value.lower()]
            raise ValueError(f"must be a day of the week: {', '.join(DAYS)}")
        # number, integer, hour
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if not is_finite_number(value):
            raise ValueError("must be a finite number")
        if kind in ("integer", "hour") and value != int(value):
            raise ValueError("must be a whole number")
        lo, hi = (0, 23) if kind == "hour" else (self.min, self.max)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is None or hi is None:  # one-sided: "between 0 and ?" would read as a bug
                raise ValueError(f"must be ≥ {format_number(lo)}" if hi is None else f"must be ≤ {format_number(hi)}")
            raise ValueError(f"must be between {format_number(lo)} and {format_number(hi)}")
        return int(value) if kind in ("integer", "hour") else value

    @property
    def _allowed(self) -> frozenset[str]:
        cached = self.__dict__.get("_allowed_cache")
        if cached is None:
            cached = frozenset(self.values)
            object.__setattr__(self, "_allowed_cache", cached)
        return cached

    def default_value(self, now: datetime | None = None) -> Any:
        if self.default == "now":
            now = now or datetime.now(UTC)
            return now.hour if self.kind == "hour" else DAYS[now.weekday()]
        return self.default


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {**{d: d for d in DAYS}, **{full: full[:3] for full in _FULL_DAYS}}


def is_finite_number(value: Any) -> bool:
    """A JSON/YAML number that fits a float: not a bool, not NaN or infinite, not a 400-digit integer.

    >>> is_finite_number(3), is_finite_number(float("nan")), is_finite_number(10**400), is_finite_number(True)
    (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def format_number(x: float | None) -> str:
    """``3`` for 3.0, ``0.5`` for 0.5, ``?`` for None: numbers as a person writes them in a message."""
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class ContextSchema:
    fields: tuple[ContextField, ...]

    @property
    def by_name(self) -> dict[str, ContextField]:
        cached = self.__dict__.get("_by_name")
        if cached is None:
            cached = {f.name: f for f in self.fields}
            object.__setattr__(self, "_by_name", cached)
        return cached

    def normalise(
        self, raw: Mapping[str, Any], now: datetime | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Validate a request context.

        Returns the normalised context (defaults filled in) and a list of
        ``(field, message)`` problems; the context is usable only when the
        list is empty.
        """
        problems: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        by_name = self.by_name
        for key in raw:
            if key not in by_name:
                problems.append((key, f"unknown context field; known fields: {', '.join(by_name)}"))
        for spec in self.fields:
            if spec.name in raw and raw[spec.name] is not None:
                try:
                    out[spec.name] = spec.coerce(raw[spec.name])
                except ValueError as exc:
                    problems.append((spec.name, str(exc)))
            elif spec.required:
                problems.append((spec.name, "required context field is missing"))
            elif spec.default is not None:
                out[spec.name] = spec.default_value(now)
        return out, problems


@dataclass(frozen=True)
class Condition:
    """One test of a context field inside a rule's ``when``.

    ``op`` is one of ``eq``, ``ne``, ``in``, ``not_in``, ``gt``, ``gte``,
    ``lt``, ``lte``, ``between`` (inclusive) and ``hours`` (an hour-of-day
    window ``[from, to)`` that may wrap past midnight).  A condition on a field
    the context lacks is false, whatever the operator.
    """

    field: str
    op: str
    value: Any

    def matches(self, context: Mapping[str, Any]) -> bool:
        if self.field not in context:
            return False
        x = context[self.field]
        op, v = self.op, self.value
        if op == "eq":
            return bool(x == v)
        if op == "ne":
            return bool(x != v)
        if op == "in":
            return x in v
        if op == "not_in":
            return x not in v
        if op == "gt":
            return bool(x > v)
        if op == "gte":
            return bool(x >= v)
        if op == "lt":
            return bool(x < v)
        if op == "lte":
            return bool(x <= v)
        if op == "between":
            return bool(v[0] <= x <= v[1])
        if op == "hours":
            start, end = v
            return bool(start <= x < end) if start < end else bool(x >= start or x < end)
        raise AssertionError(op)  # pragma: no cover - ops are validated on load

    def to_yaml(self) -> Any:
        """The YAML form this condition was (or could have been) written in."""
        if self.op == "eq":
            return self.value
        if self.op == "hours":
            return {"from": self.value[0], "to": self.value[1]}
        if self.op in ("in", "not_in"):
            return {self.op: sorted(self.value)}
        if self.op == "between":
            return {"between": list(self.value)}
        return {self.op: self.value}


@dataclass(frozen=True)
class Rule:
    """``when`` every condition holds, show the first eligible of ``items``."""

    name: str
    conditions: tuple[Condition, ...]
    items: tuple[str, ...]
    line: int | None = None

    def matches(self, context: Mapping[str, Any]) -> bool:
        return all(c.matches(context) for c in self.conditions)


@dataclass(frozen=True)
class SlotConfig:
    """A page slot, in page order (``position`` 0 is filled first)."""

    name: str
    position: int
    tier: str
    exploration: float
    rules: tuple[Rule, ...]
    default: tuple[str, ...]
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    tree: TreeSettings = field(default_factory=TreeSettings)
    gradient: GradientSettings = field(default_factory=GradientSettings)
    exposure: ExposureSettings | None = None  # the publisher exposure cap, if any (bandit.exposure)
    cold_start: ColdStartSettings | None = None  # the budget for new catalog items, if any (bandit.coldstart)


@dataclass(frozen=True)
class RewardConfig:
    """How shopper events become a reward, and how long to wait for them.

    The reward of one slot decision is the sum of the weights of the distinct
    event types posted for it (the first of each type counts; repeats are
    accepted and ignored), plus ``revenue_weight`` times the revenue of the
    first purchase, plus the last explicit ``reward`` value posted, if any.
    A decision with nothing posted inside the window gets ``default``.
    """

    window_seconds: float
    default: float
    events: Mapping[str, float]
    revenue_weight: float
    #: ``[low, high]`` an explicit ``reward`` value must lie in (None: any finite number).
    range: tuple[float, float] | None = None
    #: The largest revenue a purchase may carry (None: any).
    max_revenue: float | None = None


@dataclass(frozen=True)
class Pin:
    slot: str
    item: str
    conditions: tuple[Condition, ...] = ()

    def matches(self, context: Mapping[str, Any]) -> bool:
        return all(c.matches(context) for c in self.conditions)


@dataclass(frozen=True)
class Constraints:
    exclude: frozenset[str] = frozenset()
    pins: tuple[Pin, ...] = ()
    publisher_cap: int | None = None


#: The store API's actions whose access the config sets (the admin API always needs a key).
ACCESS_ACTIONS = ("rank", "reward", "slots")


@dataclass(frozen=True)
class ServiceSettings:
    max_body_bytes: int = 65536
    max_candidates: int = 1000
    joined_log_max_events: int = 1_000_000
    #: ``rank``, ``reward``, ``slots`` -> ``key`` (an API key is needed; the default) or ``open``.
    access: Mapping[str, str] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(ACCESS_ACTIONS, "key")))
    #: Origins (``https://www.example.com``) whose pages may call the store API from the browser (CORS).
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    """The whole parsed config.  ``version`` is a hash of the file's bytes."""

    name: str
    source: str
    version: str
    catalog: Catalog
    context: ContextSchema
    slots: tuple[SlotConfig, ...]
    reward: RewardConfig
    constraints: Constraints
    service: ServiceSettings

    def slot(self, name: str) -> SlotConfig:
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise KeyError(name)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    def summary(self) -> str:
        return (
            f"{self.source}: ok — store {self.name!r}, version {self.version}, {len(self.catalog.items)} items, "
            f"{len(self.context.fields)} context fields, slots {', '.join(self.slot_names)}, "
            f"reward window {_duration_text(self.reward.window_seconds)}"
        )


def _duration_text(seconds: float) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds}s"
