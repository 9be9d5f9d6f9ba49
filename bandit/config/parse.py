"""Reading the store config: YAML in, a :class:`~bandit.config.model.StoreConfig` out, or every problem at once.

Every section is checked in full before anything is returned, so one run of
``storefront check`` lists every problem, each with file, line and field path.
Unknown keys are errors: a typo such as ``exploraton`` must not silently fall
back to a default.  See ``docs/config.md`` for the reference of every key.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from pathlib import Path as FsPath
from types import MappingProxyType
from typing import Any

from bandit import tiers
from bandit.config import yamlpos
from bandit.config.checker import Checker, close_match
from bandit.config.model import (
    ACCESS_ACTIONS,
    CONTEXT_KINDS,
    FEATURE_KINDS,
    Catalog,
    Condition,
    Constraints,
    ContextField,
    ContextSchema,
    FeatureSpec,
    Item,
    Pin,
    RewardConfig,
    Rule,
    ServiceSettings,
    SlotConfig,
    StoreConfig,
    format_number,
)
from bandit.config.settings import (
    ESCALATION_MODES,
    ColdStartSettings,
    EscalationSettings,
    ExposureSettings,
    GradientSettings,
    TreeSettings,
)
from bandit.config.yamlpos import ConfigError, Path, Problem

_ESCALATION_INTEGERS = ("min_events", "max_events", "retrain_every", "train_window", "ramp_events",
                        "guardrail_min_events", "guardrail_window", "canary_events")  # fmt: skip
_GRADIENT_INTEGERS: dict[str, tuple[int, int | None]] = {
    "batch": (1, 100_000), "halflife": (0, None), "context_bits": (4, 20), "item_bits": (4, 16),
    "min_events": (0, None), "number_bins": (2, 1000),
}  # fmt: skip
_GRADIENT_RANGES = {"learning_rate": (0.0, 10.0), "critic_learning_rate": (0.0, 10.0), "entropy": (0.0, 10.0),
                    "optimism": (-10.0, 10.0), "min_exploration": (0.0, 0.5), "kl_limit": (0.0, 10.0),
                    "weight_clip": (1.0, 1e6), "ratio_clip": (0.0, 100.0), "prior": (0.0, 1e6),
                    "fairness": (0.0, 100.0), "own_crosses": (0.0, 10.0)}  # fmt: skip
_GRADIENT_POSITIVE = {"learning_rate", "critic_learning_rate", "min_exploration", "kl_limit", "prior", "ratio_clip"}
_ESCALATION_RANGES = {"confidence": (0.5, 0.9999), "guardrail_confidence": (0.5, 0.9999), "holdout": (0.0, 0.5),
                      "probe": (0.0, 1.0), "min_lift": (-1.0, 10.0), "guardrail_margin": (0.0, 10.0),
                      "canary": (0.0, 0.5), "canary_margin": (0.0, 1.0)}  # fmt: skip


def load_config(path: str | FsPath) -> StoreConfig:
    """Read and validate a config file.

    Raises
    ------
    ConfigError
        Listing every problem with file, line and field path.
    """
    path = FsPath(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, "", f"not UTF-8 text: {exc.reason}")]) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> StoreConfig:
    """Parse config text; ``source`` names the file in error messages."""
    data, lines = yamlpos.load(text, source)
    checker = ConfigChecker(source, lines)
    config = checker.store(data, text)
    if checker.problems:
        raise ConfigError(checker.problems)
    assert config is not None
    return config


class ConfigChecker(Checker):
    """The store's sections on top of the generic checks; also validates learned snapshots' rules."""

    # ---- sections ----------------------------------------------------------------

    def store(self, data: Any, text: str) -> StoreConfig | None:
        root = self.mapping(
            data,
            (),
            required=("catalog", "context", "slots", "reward"),
            optional=("store", "constraints", "service"),
        )
        if root is None:
            return None
        name = "store"
        if "store" in root:
            store = self.mapping(root["store"], ("store",), optional=("name", "description"))
            if store and "name" in store:
                name = self.name(store["name"], ("store", "name")) or name
        catalog = self.catalog(root.get("catalog"), ("catalog",)) if "catalog" in root else None
        context = self.context(root.get("context"), ("context",)) if "context" in root else None
        reward = self.reward(root.get("reward"), ("reward",)) if "reward" in root else None
        item_ids = set(catalog.ids) if catalog else set()
        slots = self.slots(root["slots"], ("slots",), context, item_ids) if "slots" in root and context else ()
        constraints = self.constraints(root.get("constraints", {}), ("constraints",), item_ids, slots, context)
        service = self.service(root.get("service", {}), ("service",))
        if catalog and not self.problems:  # slots' positions are their list indices only when every slot parsed
            self.exposure_feasible(slots, catalog)
        if self.problems or not (catalog and context and reward and constraints and service):
            return None
        version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        return StoreConfig(name, self.source, version, catalog, context, slots, reward, constraints, service)

    def catalog(self, value: Any, path: Path) -> Catalog | None:
        section = self.mapping(value, path, required=("items",), optional=("features",))
        if section is None:
            return None
        specs: dict[str, FeatureSpec] = {}
        if "features" in section:
            features = section["features"]
            if not isinstance(features, dict):
                self.error((*path, "features"), "must be a mapping of feature name to {type: ...}")
            else:
                for fname, fspec in features.items():
                    spec = self.feature_spec(fname, fspec, (*path, "features", fname))
                    if spec:
                        specs[fname] = spec
        items: list[Item] = []
        seen: set[str] = set()
        for i, raw in enumerate(self.listing(section["items"], (*path, "items"), min_len=1)):
            ipath = (*path, "items", i)
            entry = self.mapping(raw, ipath, required=("id", "publisher"), optional=("title", "features"))
            if entry is None or "id" not in entry or "publisher" not in entry:
                continue
            item_id = self.name(entry["id"], (*ipath, "id"), "item id")
            publisher = self.name(entry["publisher"], (*ipath, "publisher"), "publisher")
            if item_id and item_id in seen:
                self.error((*ipath, "id"), f"duplicate item id {item_id!r}")
            title = entry.get("title", "")
            if not isinstance(title, str):
                self.error((*ipath, "title"), "must be a string")
                title = ""
            feats = self.item_features(entry.get("features", {}), (*ipath, "features"), specs)
            if item_id and publisher and feats is not None:
                seen.add(item_id)
                items.append(Item(item_id, publisher, MappingProxyType(feats), title))
        return Catalog(tuple(specs.values()), tuple(items))

    def feature_spec(self, fname: Any, value: Any, path: Path) -> FeatureSpec | None:
        if self.name(fname, path, "feature name") is None:
            return None
        spec = self.mapping(value, path, required=("type",), optional=("values", "min", "max"))
        if spec is None or "type" not in spec:
            return None
        kind = spec["type"]
        if kind not in FEATURE_KINDS:
            self.error((*path, "type"), f"unknown feature type {kind!r}; use one of: {', '.join(FEATURE_KINDS)}")
            return None
        return self._typed(FeatureSpec, fname, kind, spec, path)

    def _typed(
        self, cls: Callable[..., Any], fname: str, kind: str, spec: dict[str, Any], path: Path, **extra: Any
    ) -> Any:
        values: tuple[str, ...] = ()
        lo = hi = None
        if kind == "category":
            if "values" not in spec:
                self.error(path, "a category needs 'values', the list of allowed values")
                return None
            raw_values = self.listing(spec["values"], (*path, "values"), min_len=1)
            names = [self.name(v, (*path, "values", i), "value") for i, v in enumerate(raw_values)]
            if any(n is None for n in names):
                return None
            if len(set(names)) != len(names):
                self.error((*path, "values"), "values must be distinct")
            values = tuple(n for n in names if n is not None)
        elif "values" in spec:
            self.error((*path, "values"), f"'values' is only for category fields, not {kind}")
        if kind in ("number", "integer"):
            lo = self.number(spec["min"], (*path, "min")) if "min" in spec else None
            hi = self.number(spec["max"], (*path, "max")) if "max" in spec else None
            if lo is not None and hi is not None and lo > hi:
                self.error((*path, "max"), f"max ({format_number(hi)}) is below min ({format_number(lo)})")
        else:
            for key in ("min", "max"):
                if key in spec:
                    self.error((*path, key), f"'{key}' is only for number fields, not {kind}")
        return cls(fname, kind, values, lo, hi, **extra)

    def item_features(self, value: Any, path: Path, specs: dict[str, FeatureSpec]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of feature name to value")
            return None
        out: dict[str, Any] = {}
        for fname, fvalue in value.items():
            spec = specs.get(fname)
            if spec is None:
                hint = close_match(fname, tuple(specs))
                self.error((*path, fname), f"feature not declared under catalog.features{hint}")
                continue
            try:
                out[fname] = coerce_feature(spec, fvalue)
            except ValueError as exc:
                self.error((*path, fname), str(exc))
        return out

    def context(self, value: Any, path: Path) -> ContextSchema | None:
        if not isinstance(value, dict) or not value:
            self.error(path, "must be a mapping of field name to {type: ...}")
            return None
        fields = []
        for fname, raw in value.items():
            fpath = (*path, fname)
            if self.name(fname, fpath, "context field name") is None:
                continue
            spec = self.mapping(
                raw, fpath, required=("type",), optional=("values", "min", "max", "required", "default")
            )
            if spec is None or "type" not in spec:
                continue
            kind = spec["type"]
            if kind not in CONTEXT_KINDS:
                self.error((*fpath, "type"), f"unknown context type {kind!r}; use one of: {', '.join(CONTEXT_KINDS)}")
                continue
            required = spec.get("required", False)
            if not isinstance(required, bool):
                self.error((*fpath, "required"), "must be true or false")
                required = False
            base = self._typed(ContextField, fname, kind, spec, fpath)
            if base is None:
                continue
            default = None
            if "default" in spec:
                if required:
                    self.error((*fpath, "default"), "a required field cannot have a default")
                elif spec["default"] == "now" and kind in ("hour", "day_of_week"):
                    default = "now"
                else:
                    try:
                        default = base.coerce(spec["default"])
                    except ValueError as exc:
                        self.error((*fpath, "default"), f"default {spec['default']!r} {exc}")
            fields.append(
                ContextField(base.name, kind, base.values, base.min, base.max, required=required, default=default)
            )
        return ContextSchema(tuple(fields))

    def slots(self, value: Any, path: Path, context: ContextSchema, item_ids: set[str]) -> tuple[SlotConfig, ...]:
        out: list[SlotConfig] = []
        names: set[str] = set()
        for i, raw in enumerate(self.listing(value, path, min_len=1)):
            spath = (*path, i)
            spec = self.mapping(
                raw,
                spath,
                required=("name", "default"),
                optional=("tier", "exploration", "rules", "escalation", "tree", "gradient", "exposure", "cold_start"),
            )
            if spec is None or "name" not in spec:
                continue
            name = self.name(spec["name"], (*spath, "name"), "slot name")
            if name in names:
                self.error((*spath, "name"), f"duplicate slot name {name!r}")
            tier = spec.get("tier", "rules")
            startable = tiers.from_config()  # a learned tier is reached by escalation, never configured
            if tier not in startable:
                self.error((*spath, "tier"), f"unknown tier {tier!r}; available: {', '.join(startable)}")
            exploration = 0.05
            if "exploration" in spec:
                exploration = (
                    self.number(spec["exploration"], (*spath, "exploration"), lo=0, hi=0.5, lo_open=True) or 0.05
                )
            rules = []
            for j, rraw in enumerate(self.listing(spec.get("rules", []), (*spath, "rules"))):
                rule = self.rule(rraw, (*spath, "rules", j), context, item_ids, j)
                if rule:
                    rules.append(rule)
            default = self.item_list(spec.get("default"), (*spath, "default"), item_ids) if "default" in spec else None
            escalation = self.escalation(spec.get("escalation", {}), (*spath, "escalation"))
            tree = self.tree(spec.get("tree", {}), (*spath, "tree"), context)
            gradient = self.gradient(spec.get("gradient", {}), (*spath, "gradient"))
            exposure = self.exposure(spec["exposure"], (*spath, "exposure")) if "exposure" in spec else None
            cold = self.cold_start(spec["cold_start"], (*spath, "cold_start")) if "cold_start" in spec else None
            settled = (exposure or "exposure" not in spec) and (cold or "cold_start" not in spec)
            if name and default and escalation and tree and gradient and settled:
                names.add(name)
                out.append(
                    SlotConfig(
                        name, len(out), tier, exploration, tuple(rules), default, escalation, tree, gradient,
                        exposure, cold,
                    )
                )  # fmt: skip
        return tuple(out)

    def escalation(self, value: Any, path: Path) -> EscalationSettings | None:
        fields = EscalationSettings.__dataclass_fields__
        spec = self.mapping(value, path, optional=tuple(fields))
        if spec is None:
            return None
        out: dict[str, Any] = {}
        ok = True
        for key, raw in spec.items():
            kpath = (*path, key)
            if key == "mode":
                if raw not in ESCALATION_MODES:
                    self.error(kpath, f"unknown mode {raw!r}; use one of: {', '.join(ESCALATION_MODES)}")
                    ok = False
                out[key] = raw
            elif key == "estimator":
                if raw not in ("dr", "snips", "ips"):
                    self.error(kpath, f"unknown estimator {raw!r}; use one of: dr, snips, ips")
                    ok = False
                out[key] = raw
            elif key == "tiers":
                learned = tiers.names()[1:]  # every rung above the rules
                listed = self.listing(raw, kpath, min_len=1)
                unknown = [t for t in listed if t not in learned]
                if unknown:
                    self.error(kpath, f"unknown tier {unknown[0]!r}; the ladder's rungs: {', '.join(learned)}")
                    ok = False
                elif len(set(listed)) != len(listed) or list(listed) != sorted(listed, key=learned.index):
                    self.error(kpath, f"list each rung once, in ladder order: {', '.join(learned)}")
                    ok = False
                out[key] = tuple(listed)
            elif key == "ramp":
                parsed = [self.number(v, (*kpath, i), lo=0, hi=1, lo_open=True) for i, v in enumerate(
                    self.listing(raw, kpath, min_len=1))]  # fmt: skip
                steps = [v for v in parsed if v is not None]
                if len(steps) != len(parsed) or not steps:
                    ok = False
                elif steps != sorted(steps) or len(set(steps)) != len(steps):
                    self.error(kpath, "traffic shares must increase step by step")
                    ok = False
                elif steps[-1] != 1.0:
                    self.error(kpath, "the last step must be 1.0 (the whole traffic)")
                    ok = False
                out[key] = tuple(steps)
            elif key in _ESCALATION_INTEGERS:  # max_events may be 0 (one look); the others at least 1
                n = self.number(raw, kpath, lo=0 if key == "max_events" else 1, integer=True)
                ok = ok and n is not None
                out[key] = n
            else:  # numbers within a range
                lo, hi = _ESCALATION_RANGES[key]
                x = self.number(raw, kpath, lo=lo, hi=hi)
                ok = ok and x is not None
                out[key] = x
        if ok and out.get("max_events") and out["max_events"] < out.get("min_events", EscalationSettings.min_events):
            self.error((*path, "max_events"), f"must be 0 (one look) or at least min_events "
                       f"({out.get('min_events', EscalationSettings.min_events)})")  # fmt: skip
            ok = False
        return EscalationSettings(**out) if ok else None

    def tree(self, value: Any, path: Path, context: ContextSchema) -> TreeSettings | None:
        spec = self.mapping(value, path, optional=tuple(TreeSettings.__dataclass_fields__))
        if spec is None:
            return None
        out: dict[str, Any] = {}
        ok = True
        limits = {"max_depth": (1, 8), "min_leaf": (1, None), "top_items": (1, 50)}
        for key, raw in spec.items():
            kpath = (*path, key)
            if key in limits:
                n = self.number(raw, kpath, lo=limits[key][0], hi=limits[key][1], integer=True)
                ok = ok and n is not None
                out[key] = n
            elif key == "pessimism":
                x = self.number(raw, kpath, lo=0, hi=10)
                ok = ok and x is not None
                out[key] = x
            else:  # features
                names = self.listing(raw, kpath, min_len=1)
                for i, fname in enumerate(names):
                    field_spec = context.by_name.get(fname) if isinstance(fname, str) else None
                    if field_spec is None:
                        self.error((*kpath, i), f"unknown context field {fname!r}")
                        ok = False
                    elif not field_spec.required and field_spec.default is None:
                        self.error((*kpath, i), f"{fname!r} may be missing from a request; give it a default or "
                                   "make it required to split on it")  # fmt: skip
                        ok = False
                out[key] = tuple(names)
        return TreeSettings(**out) if ok else None

    def gradient(self, value: Any, path: Path) -> GradientSettings | None:
        spec = self.mapping(value, path, optional=tuple(GradientSettings.__dataclass_fields__))
        if spec is None:
            return None
        out: dict[str, Any] = {}
        ok = True
        for key, raw in spec.items():
            kpath = (*path, key)
            if key in ("pairs", "own_pairs"):
                if not isinstance(raw, bool):
                    self.error(kpath, "must be true or false")
                    ok = False
                out[key] = raw
                continue
            if key in _GRADIENT_INTEGERS:
                low, high = _GRADIENT_INTEGERS[key]
                x = self.number(raw, kpath, lo=low, hi=high, integer=True)
            else:
                lo, hi = _GRADIENT_RANGES[key]
                x = self.number(raw, kpath, lo=lo, hi=hi, lo_open=key in _GRADIENT_POSITIVE)
            ok = ok and x is not None
            out[key] = x
        return GradientSettings(**out) if ok else None

    def exposure(self, value: Any, path: Path) -> ExposureSettings | None:
        spec = self.mapping(value, path, required=("max_share", "window"))
        if spec is None or "max_share" not in spec or "window" not in spec:
            return None
        share = self.number(spec["max_share"], (*path, "max_share"), lo=0, hi=1, lo_open=True)
        window = self.number(spec["window"], (*path, "window"), lo=10, integer=True)
        if share is None or window is None:
            return None
        settings = ExposureSettings(share, int(window))
        if settings.limit < 1:
            self.error((*path, "max_share"), f"max_share × window must be at least 1 impression (got "
                       f"{format_number(share)} × {int(window)}); raise one of them")  # fmt: skip
            return None
        return settings

    def cold_start(self, value: Any, path: Path) -> ColdStartSettings | None:
        spec = self.mapping(value, path, optional=("impressions", "share"))
        if spec is None:
            return None
        default = ColdStartSettings()
        impressions: float | None = default.impressions
        if "impressions" in spec:
            impressions = self.number(spec["impressions"], (*path, "impressions"), lo=1, integer=True)
        share: float | None = default.share
        if "share" in spec:
            share = self.number(spec["share"], (*path, "share"), lo=0, hi=0.5, lo_open=True)
        if impressions is None or share is None:
            return None
        return ColdStartSettings(int(impressions), float(share))

    def exposure_feasible(self, slots: tuple[SlotConfig, ...], catalog: Catalog) -> None:
        """A cap no catalog can meet: fewer publishers than a window needs at ``limit`` impressions each."""
        publishers = len({item.publisher for item in catalog.items})
        for slot in slots:
            if slot.exposure is None:
                continue
            needed = -(-slot.exposure.window // slot.exposure.limit)  # ceil(window / limit)
            if publishers < needed:
                self.error(("slots", slot.position, "exposure", "max_share"),
                           f"a window of {slot.exposure.window} at most {slot.exposure.limit} per publisher needs "
                           f"{needed} publishers; the catalog has {publishers}")  # fmt: skip

    def rule(self, value: Any, path: Path, context: ContextSchema, item_ids: set[str], index: int) -> Rule | None:
        spec = self.mapping(value, path, required=("when", "items"), optional=("name",))
        if spec is None or "when" not in spec or "items" not in spec:
            return None
        name = self.name(spec.get("name", f"rule-{index + 1}"), (*path, "name"), "rule name")
        conditions = self.when(spec["when"], (*path, "when"), context)
        if conditions == ():
            self.error((*path, "when"), "a rule needs at least one condition (the slot's 'default' covers the rest)")
        items = self.item_list(spec["items"], (*path, "items"), item_ids)
        if name is None or conditions is None or items is None:
            return None
        return Rule(name, conditions, items, self.line(path))

    def item_list(self, value: Any, path: Path, item_ids: set[str]) -> tuple[str, ...] | None:
        raw = [value] if isinstance(value, str) else value
        if not isinstance(raw, list) or not raw:
            self.error(path, "must be an item id or a non-empty list of item ids")
            return None
        ok = True
        for i, item in enumerate(raw):
            ipath = path if isinstance(value, str) else (*path, i)
            if not isinstance(item, str) or item not in item_ids:
                hint = close_match(item, tuple(item_ids)) if isinstance(item, str) else ""
                self.error(ipath, f"unknown item {item!r}: not in catalog.items{hint}")
                ok = False
        if ok and len(set(raw)) != len(raw):
            self.error(path, "lists the same item twice")
            ok = False
        return tuple(raw) if ok else None

    def when(self, value: Any, path: Path, context: ContextSchema) -> tuple[Condition, ...] | None:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of context field to condition")
            return None
        out: list[Condition] = []
        ok = True
        for fname, raw in value.items():
            cond = self.condition(fname, raw, (*path, fname), context)
            if cond is None:
                ok = False
            else:
                out.extend(cond)
        return tuple(out) if ok else None

    def condition(self, fname: str, raw: Any, path: Path, context: ContextSchema) -> list[Condition] | None:
        spec = context.by_name.get(fname)
        if spec is None:
            hint = close_match(fname, tuple(context.by_name))
            self.error(path, f"unknown context field{hint}; declared under context: {', '.join(context.by_name)}")
            return None

        def val(v: Any, vpath: Path) -> Any:
            try:
                return spec.coerce(v)
            except ValueError as exc:
                self.error(vpath, f"{v!r}: {exc}")
                raise

        try:
            if not isinstance(raw, dict):
                return [Condition(fname, "eq", val(raw, path))]
            numeric = spec.kind in ("number", "integer", "hour")
            ops = ("eq", "ne", "in", "not_in") + (("gt", "gte", "lt", "lte", "between") if numeric else ())
            ops += ("from", "to") if spec.kind == "hour" else ()
            if not raw:
                self.error(path, f"empty condition; use one of: {', '.join(ops)}")
                return None
            out = []
            for op, v in raw.items():
                opath = (*path, op)
                if op not in ops:
                    self.error(opath, f"unknown operator for a {spec.kind} field; use one of: {', '.join(ops)}")
                    return None
                if op in ("from", "to"):
                    continue
                if op in ("in", "not_in"):
                    if not isinstance(v, list) or not v:
                        self.error(opath, "must be a non-empty list")
                        return None
                    out.append(Condition(fname, op, frozenset(val(x, (*opath, i)) for i, x in enumerate(v))))
                elif op == "between":
                    if not isinstance(v, list) or len(v) != 2:
                        self.error(opath, "must be a list of two numbers [low, high]")
                        return None
                    lo, hi = val(v[0], (*opath, 0)), val(v[1], (*opath, 1))
                    if lo > hi:
                        self.error(opath, f"low ({lo}) is above high ({hi})")
                        return None
                    out.append(Condition(fname, op, (lo, hi)))
                else:
                    out.append(Condition(fname, op, val(v, opath)))
            if "from" in raw or "to" in raw:
                if "from" not in raw or "to" not in raw:
                    self.error(path, "an hour window needs both 'from' and 'to' (to is exclusive; may wrap midnight)")
                    return None
                start, end = val(raw["from"], (*path, "from")), val(raw["to"], (*path, "to"))
                if start == end:
                    self.error(path, "an hour window with from == to is empty")
                    return None
                out.append(Condition(fname, "hours", (start, end)))
            return out
        except ValueError:
            return None

    def reward(self, value: Any, path: Path) -> RewardConfig | None:
        spec = self.mapping(value, path, required=("window",),
                            optional=("default", "events", "revenue_weight", "range", "max_revenue"))  # fmt: skip
        if spec is None or "window" not in spec:
            return None
        window = self.duration(spec["window"], (*path, "window"))
        default = self.number(spec.get("default", 0.0), (*path, "default"))
        events: dict[str, float] = {}
        raw_events = spec.get("events", {"click": 1.0})
        if not isinstance(raw_events, dict) or not raw_events:
            self.error((*path, "events"), "must be a mapping of event type to weight, e.g. {click: 1, purchase: 5}")
        else:
            for ename, weight in raw_events.items():
                if self.name(ename, (*path, "events", ename), "event type") is None:
                    continue
                if ename == "reward":
                    self.error((*path, "events", ename), "'reward' is reserved for explicit reward values")
                    continue
                if ename == "activate":
                    self.error((*path, "events", ename), "'activate' is reserved for the activation of a deferred "
                               "page (the Personalizer API)")  # fmt: skip
                    continue
                w = self.number(weight, (*path, "events", ename))
                if w is not None:
                    events[ename] = w
        revenue_weight = self.number(spec.get("revenue_weight", 0.0), (*path, "revenue_weight"), lo=0)
        bounds = None
        if "range" in spec:
            raw = spec["range"]
            if not isinstance(raw, list) or len(raw) != 2:
                self.error((*path, "range"), "must be [low, high], the range an explicit reward value must lie in")
            else:
                low, high = self.number(raw[0], (*path, "range", 0)), self.number(raw[1], (*path, "range", 1))
                if low is not None and high is not None:
                    if low >= high:
                        self.error((*path, "range"), f"low ({low:g}) must be below high ({high:g})")
                    bounds = (low, high)
        max_revenue = None
        if "max_revenue" in spec:
            max_revenue = self.number(spec["max_revenue"], (*path, "max_revenue"), lo=0)
        if window is None or default is None or revenue_weight is None:
            return None
        return RewardConfig(window, default, MappingProxyType(events), revenue_weight, bounds, max_revenue)

    def constraints(
        self, value: Any, path: Path, item_ids: set[str], slots: tuple[SlotConfig, ...], context: ContextSchema | None
    ) -> Constraints | None:
        spec = self.mapping(value, path, optional=("exclude", "pins", "publisher_cap"))
        if spec is None:
            return None
        exclude: frozenset[str] = frozenset()
        if "exclude" in spec:
            items = self.item_list(spec["exclude"], (*path, "exclude"), item_ids)
            exclude = frozenset(items or ())
        pins = []
        slot_names = {s.name for s in slots}
        pinned: set[str] = set()
        for i, raw in enumerate(self.listing(spec.get("pins", []), (*path, "pins"))):
            ppath = (*path, "pins", i)
            pin = self.mapping(raw, ppath, required=("slot", "item"), optional=("when",))
            if pin is None or "slot" not in pin or "item" not in pin:
                continue
            if not isinstance(pin["slot"], str) or pin["slot"] not in slot_names:
                self.error((*ppath, "slot"), f"unknown slot {pin['slot']!r}; slots: {', '.join(sorted(slot_names))}")
                continue
            item = self.item_list(pin["item"], (*ppath, "item"), item_ids)
            if item and len(item) != 1:
                self.error((*ppath, "item"), "a pin names exactly one item")
                continue
            if item and item[0] in exclude:
                self.error((*ppath, "item"), f"item {item[0]!r} is pinned but also excluded")
                continue
            conditions = self.when(pin["when"], (*ppath, "when"), context) if "when" in pin and context else ()
            if item and conditions is not None:
                if not conditions and pin["slot"] in pinned:
                    self.error(ppath, f"slot {pin['slot']!r} already has an unconditional pin above")
                pinned.add(pin["slot"]) if not conditions else None
                pins.append(Pin(pin["slot"], item[0], conditions))
        cap = None
        if "publisher_cap" in spec:
            cap_value = self.number(spec["publisher_cap"], (*path, "publisher_cap"), lo=1, integer=True)
            cap = int(cap_value) if cap_value is not None else None
        return Constraints(exclude, tuple(pins), cap)

    def service(self, value: Any, path: Path) -> ServiceSettings | None:
        spec = self.mapping(value, path, optional=("max_body_bytes", "max_candidates", "joined_log_max_events",
                                                   "access", "cors_origins"))  # fmt: skip
        if spec is None:
            return None
        kwargs: dict[str, Any] = {}
        for key in ("max_body_bytes", "max_candidates", "joined_log_max_events"):
            if key in spec:
                n = self.number(spec[key], (*path, key), lo=1, integer=True)
                if n is not None:
                    kwargs[key] = int(n)
        if "access" in spec:
            access = self.mapping(spec["access"], (*path, "access"), optional=ACCESS_ACTIONS)
            if access is not None:
                chosen = dict.fromkeys(ACCESS_ACTIONS, "key")
                for action, mode in access.items():
                    if mode not in ("key", "open"):
                        self.error((*path, "access", action), f"must be 'key' (an API key is needed) or 'open' "
                                   f"(got {mode!r}); the admin API always needs a key")  # fmt: skip
                    else:
                        chosen[action] = mode
                kwargs["access"] = MappingProxyType(chosen)
        if "cors_origins" in spec:
            origins = []
            for i, origin in enumerate(self.listing(spec["cors_origins"], (*path, "cors_origins"))):
                if not isinstance(origin, str) or not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                    self.error((*path, "cors_origins", i), "must be an origin: scheme and host (and port), no path, "
                               "e.g. https://www.example.com")  # fmt: skip
                else:
                    origins.append(origin)
            kwargs["cors_origins"] = tuple(origins)
        return ServiceSettings(**kwargs)


def coerce_feature(spec: FeatureSpec, value: Any) -> Any:
    """An item feature's value as ``spec`` declares it, or ``ValueError`` saying why it does not fit."""
    if spec.kind == "category":
        if not isinstance(value, str) or value not in spec.values:
            raise ValueError(f"{value!r} is not one of the declared values: {', '.join(spec.values)}")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a finite number")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise ValueError(
            f"{value} is outside the declared range [{format_number(spec.min)}, {format_number(spec.max)}]"
        )
    return float(value)
