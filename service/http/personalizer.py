"""The Azure Personalizer REST surface, mapped onto this service: a home for code written against Personalizer.

Paths as Microsoft's clients call them, under ``/personalizer`` with or
without a version segment (``/personalizer/rank?api-version=2022-09-01-preview``
from ``azure-ai-personalizer``, ``/personalizer/v1.0/rank`` from older clients):

``POST rank``, ``POST events/{eventId}/reward``, ``POST events/{eventId}/activate``
    single-slot: the store's first slot (in page order, the hero)
``POST multislot/rank``, ``POST multislot/events/{eventId}/reward``, ``.../activate``
    multi-slot: Personalizer's slot ids are the config's slot names
``GET configurations/service``, ``GET configurations/policy``
    what clients read at start, derived from the config

Not a second implementation: a rank is :func:`service.http.api.serve_page`
(the same policies, logging, write-behind and metrics), a reward the same
path as ``POST /v1/reward`` with an explicit value, and the keys are the
same (Personalizer's ``Ocp-Apim-Subscription-Key`` header is one of the
headers a key may come in).  How concepts map:

- ``actions`` -> candidates: a catalog item is itself (its features come from the catalog); any other id is
  an ad-hoc item for this request, with the request's features read onto the declared catalog features
  (logged with them, not learned from); ``excludedActions`` -> exclusions.
- The first action (single slot) or ``baselineAction`` (multi-slot) -> the slot's baseline: the rules
  tier's favourite when none of the slot's rules matches.
- ``contextFeatures`` (a list of objects, nested objects flattened with ``.``) -> the context: features
  named like a declared context field (the full dotted name, or its last part) are used; the others are
  ignored, named in the ``X-Storefront-Ignored-Features`` header and counted.
- ``eventId`` (the client's own) -> kept beside the service's signed id in Redis for the window; without
  one the answer carries the service's id.
- ``deferActivation`` -> the decisions are logged as deferred and learned from only once activated
  (``activate``); rewards for a page never activated are kept in the log and not learned from.
- Apprentice mode -> a slot on its rules tier serving the request's baseline (with the slot's exploration);
  ``configurations/service`` reports ``learningMode`` from the slots' tiers.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from flask import Blueprint, Response, current_app, request

from bandit.config import Item, coerce_feature
from bandit.page import PageResult
from service import metrics
from service.http.access import authorise
from service.http.api import _body, _clock, _ids, _runtime, _writer, accept_reward, log_page, serve_page
from service.http.errors import ApiError
from service.http.ids import IdSigner
from service.http.runtime import Runtime
from service.storage import STORAGE_ERRORS
from service.storage.protocols import ACCEPTED, AccessStore
from service.storage.writebehind import QUEUED

log = logging.getLogger("storefront")
bp = Blueprint("personalizer", __name__, url_prefix="/personalizer")

#: The version segments older clients put in the path (the newer ``azure-ai-personalizer`` sends none).
VERSIONS = ("v1.0", "v1.1-preview.1", "v1.1-preview.2", "v1.1-preview.3")
_JSON = "application/json"
_MAX_EVENT_ID = 256
_MAX_ACTION_ID = 256
_PUBLISHER = "publisher"  # the feature of an ad-hoc action that names its publisher
_MAX_IGNORED_NAMED = 20
_UNJOINED_GRACE = 86400.0


def _route(method: str, rule: str) -> Any:
    """Register a view under ``/personalizer/<rule>`` and ``/personalizer/<version>/<rule>``."""

    def register(view: Any) -> Any:
        bp.add_url_rule(f"/{rule}", view_func=view, methods=[method])
        bp.add_url_rule(f"/<any({', '.join(repr(v) for v in VERSIONS)}):version>/{rule}", view_func=view,
                        methods=[method], endpoint=f"{view.__name__}_versioned")  # fmt: skip
        return view

    return register


_ACTIONS = {"pz_rank": "rank", "pz_rank_multi": "rank", "pz_configuration": "slots", "pz_policy": "slots"}


@bp.before_request
def _authorise() -> None:
    name = (request.endpoint or "").rpartition(".")[2].removesuffix("_versioned")
    request.environ["storefront.key"] = authorise(_ACTIONS.get(name, "reward"), _runtime().config.service.access)


def _store() -> AccessStore:
    store: AccessStore = current_app.extensions["storefront.storage"]
    return store


def _json(payload: Any, status: int) -> tuple[Response, int]:
    return Response(json.dumps(payload, separators=(",", ":")), mimetype=_JSON), status


# --------------------------------------------------------------------------- requests


def _features(value: Any, runtime: Runtime) -> tuple[dict[str, Any], list[str]]:
    """The context from ``contextFeatures``, and the names of the features it ignored."""
    return _flatten(value, runtime.config.context.by_name, "contextFeatures")


def _flatten(value: Any, declared: Mapping[str, Any], field: str) -> tuple[dict[str, Any], list[str]]:
    """Personalizer's features (a list of objects) as one mapping onto the ``declared`` names, and the names of
    the features ignored (not declared, or lists)."""
    if value is None:
        return {}, []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ApiError(400, "invalid_type", "must be a list of JSON objects of features", field)
    context: dict[str, Any] = {}
    ignored: list[str] = []

    def walk(obj: dict[str, Any], prefix: str) -> None:
        for key, item in obj.items():
            name = f"{prefix}{key}"
            if isinstance(item, dict):
                walk(item, name + ".")
                continue
            target = name if name in declared else key if key in declared else None
            if target is None or isinstance(item, list):
                ignored.append(name)
            elif target in context and context[target] != item:
                raise ApiError(400, "invalid_value", f"feature {target!r} is given twice with different values",
                               f"{field}.{target}")  # fmt: skip
            else:
                context[target] = item

    for features in value:
        walk(features, "")
    return context, ignored


def _context(body: dict[str, Any], runtime: Runtime, now: float) -> tuple[dict[str, Any], list[str]]:
    raw, ignored = _features(body.get("contextFeatures"), runtime)
    context, problems = runtime.config.context.normalise(raw, now=datetime.fromtimestamp(now, UTC))
    if problems:
        name, message = problems[0]
        code = "missing_field" if raw.get(name) is None else "invalid_value"
        raise ApiError(400, code, message, f"contextFeatures.{name}")
    if ignored:
        metrics.PERSONALIZER_IGNORED.inc(len(ignored))
    return context, ignored


@dataclass
class _Actions:
    """A request's actions: their ids in order, those not in the catalog as items, and the features ignored."""

    ids: list[str]
    adhoc: dict[str, Item]
    ignored: list[str]


def _list(value: Any, field: str, runtime: Runtime, required: bool) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ApiError(400, "invalid_type", "must be a non-empty list" if required else "must be a list", field)
    if len(value) > runtime.config.service.max_candidates:
        raise ApiError(400, "too_many_items", f"at most {runtime.config.service.max_candidates} "
                       "(service.max_candidates)", field)  # fmt: skip
    return value


def _actions(value: Any, runtime: Runtime) -> _Actions:
    """``actions``: catalog items by id (the catalog's features are used), others as ad-hoc items whose
    ``features`` are read onto the catalog's declared features, ``publisher`` naming their publisher (else
    each is its own)."""
    out = _Actions([], {}, [])
    specs = {spec.name: spec for spec in runtime.config.catalog.features}
    declared = {**specs, _PUBLISHER: None}
    for i, entry in enumerate(_list(value, "actions", runtime, required=True)):
        if not isinstance(entry, dict):
            raise ApiError(400, "invalid_type", 'must be an object {"id": ..., "features": [...]}', f"actions[{i}]")
        item = entry.get("id")
        if not isinstance(item, str) or not item or len(item) > _MAX_ACTION_ID:
            raise ApiError(400, "invalid_type", f"must be an action id (a string of 1 to {_MAX_ACTION_ID} "
                           "characters)", f"actions[{i}].id")  # fmt: skip
        if item in out.ids:
            raise ApiError(400, "duplicate_item", f"action {item!r} is listed twice", f"actions[{i}].id")
        out.ids.append(item)
        if item in runtime.item_ids:
            continue  # a catalog item: the request's features are not used
        raw, ignored = _flatten(entry.get("features"), declared, f"actions[{i}].features")
        out.ignored += [f"actions[{i}].{name}" for name in ignored]
        publisher = raw.pop(_PUBLISHER, None)
        if publisher is not None and (not isinstance(publisher, str) or not publisher):
            raise ApiError(400, "invalid_value", "must be a non-empty string", f"actions[{i}].features.{_PUBLISHER}")
        features = {}
        for name, feature in raw.items():
            try:
                features[name] = coerce_feature(specs[name], feature)
            except ValueError as exc:
                raise ApiError(400, "invalid_value", f"{exc} (catalog.features.{name})",
                               f"actions[{i}].features.{name}") from None  # fmt: skip
        out.adhoc[item] = Item(item, publisher or item, MappingProxyType(features))
    if out.ignored:
        metrics.PERSONALIZER_IGNORED.inc(len(out.ignored))
    return out


def _ids_of(value: Any, field: str, runtime: Runtime, actions: _Actions) -> list[str]:
    """A list of action ids (``excludedActions``): each must be one of the request's actions."""
    out: list[str] = []
    for i, item in enumerate(_list(value, field, runtime, required=False)):
        if not isinstance(item, str):
            raise ApiError(400, "invalid_type", "must be an action id (string)", f"{field}[{i}]")
        if item not in actions.ids:
            raise ApiError(400, "unknown_item", f"{item!r} is not one of the request's actions", f"{field}[{i}]")
        if item in out:
            raise ApiError(400, "duplicate_item", f"action {item!r} is listed twice", f"{field}[{i}]")
        out.append(item)
    return out


def _unknown(body: dict[str, Any], allowed: set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise ApiError(400, "unknown_field", f"unknown field {key!r}; fields: {', '.join(sorted(allowed))}", key)


def _external_id(body: dict[str, Any]) -> str | None:
    value = body.get("eventId")
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_EVENT_ID:
        raise ApiError(400, "invalid_value", f"must be a non-empty string of at most {_MAX_EVENT_ID} characters",
                       "eventId")  # fmt: skip
    return value


def _defer(body: dict[str, Any]) -> bool:
    value = body.get("deferActivation", False)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_type", "must be true or false", "deferActivation")
    return value


def _remember(external: str | None, event_id: str, slots: list[str], deferred: bool, runtime: Runtime) -> str:
    """The id the client will send back: its own (kept beside ours), else ours.  A deferred page is kept too,
    so ``activate`` knows its slots."""
    if external is None and not deferred:
        return event_id
    ttl = runtime.config.reward.window_seconds + _UNJOINED_GRACE
    try:
        if not _store().map_event(external or event_id, event_id, slots, ttl):
            raise ApiError(400, "invalid_value", f"eventId {external!r} was already used; send a new one or none",
                           "eventId")  # fmt: skip
    except STORAGE_ERRORS as exc:
        metrics.STORAGE_ERRORS.labels("personalizer_id").inc()
        log.warning("personalizer: eventId %s not kept (%s): its rewards and activation will be unknown",
                    external or event_id, exc)  # fmt: skip
    return external or event_id


def _answer(payload: dict[str, Any], ignored: list[str]) -> tuple[Response, int]:
    response, status = _json(payload, 201)
    if ignored:
        names = sorted(set(ignored))
        shown = names[:_MAX_IGNORED_NAMED] + ([f"... {len(names) - _MAX_IGNORED_NAMED} more"]
                                              if len(names) > _MAX_IGNORED_NAMED else [])  # fmt: skip
        response.headers["X-Storefront-Ignored-Features"] = ", ".join(shown)
    return response, status


# --------------------------------------------------------------------------- single slot


@_route("POST", "rank")
def pz_rank(version: str | None = None) -> tuple[Response, int]:
    """Rank the actions for the store's first slot."""
    runtime = _runtime()
    body = _body(runtime)
    _unknown(body, {"contextFeatures", "actions", "excludedActions", "eventId", "deferActivation"})
    now = _clock().time()
    context, ignored = _context(body, runtime, now)
    parsed = _actions(body.get("actions"), runtime)
    actions = parsed.ids
    excluded = _ids_of(body.get("excludedActions"), "excludedActions", runtime, parsed)
    external, deferred = _external_id(body), _defer(body)
    slot = runtime.config.slots[0].name
    # Personalizer's baseline of a single-slot rank is the first action: what the client shows without us.
    event_id, page, _ = serve_page(runtime, now, context, [slot], actions, excluded, deferred=deferred,
                                   items=_adhoc(parsed), baselines={slot: actions[0]})  # fmt: skip
    ignored += parsed.ignored
    client_id = _remember(external, event_id, [slot], deferred, runtime)
    probability = dict.fromkeys(actions, 0.0)
    chosen = None
    if page.decisions:
        decision = page.decisions[0]
        probability.update(zip(decision.candidates, decision.pmf, strict=True))
        chosen = decision.item
    # The chosen action first, then the others by probability (ties in the request's order), excluded ones at 0.
    order = sorted(actions, key=lambda a: (a != chosen, -probability[a]))
    ranking = [{"id": a, "probability": probability[a]} for a in order]
    return _answer({"eventId": client_id, "ranking": ranking, "rewardActionId": chosen}, ignored)


def _resolve(event_id: str) -> tuple[str, list[str] | None]:
    """The service's event id for what the client sent, and the slots kept with it (None when not kept)."""
    if not event_id or len(event_id) > _MAX_EVENT_ID:
        raise ApiError(400, "invalid_value", f"an eventId is 1 to {_MAX_EVENT_ID} characters", "eventId")
    try:
        mapped = _store().mapped_event(event_id)
    except STORAGE_ERRORS:
        mapped = None  # the service's own ids still work while Redis is away (the rewards are queued)
    if mapped is not None:
        return mapped[0], mapped[1]
    signer: IdSigner = current_app.extensions["storefront.ids"]
    if signer.issued(event_id) is None:
        raise ApiError(404, "unknown_event", "no such event: not an eventId this store ranked (or it expired)",
                       "eventId")  # fmt: skip
    return event_id, None


def _value(body: Any, field: str) -> float:
    if not isinstance(body, dict) or "value" not in body:
        raise ApiError(400, "missing_field", 'send {"value": <a number between -1 and 1>}', field)
    value = body["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, "invalid_value", "must be a finite number", field)
    if not -1 <= value <= 1:
        raise ApiError(400, "invalid_value", f"{value:g} is outside [-1, 1], Personalizer's reward range", field)
    return float(value)


def _reward(event_id: str, slot: str, value: float, runtime: Runtime) -> None:
    try:
        accept_reward({"event_id": event_id, "slot": slot, "reward": value}, runtime,
                      runtime.config.reward.window_seconds)  # fmt: skip
    except ApiError as exc:
        if exc.field == "reward":  # Personalizer's name for it
            exc.field = "value"
        raise


@_route("POST", "events/<event_id>/reward")
def pz_reward(event_id: str, version: str | None = None) -> tuple[Response, int]:
    """Post the reward of the store's first slot for a ranked event."""
    runtime = _runtime()
    value = _value(_body(runtime), "value")
    ours, _ = _resolve(event_id)
    _reward(ours, runtime.config.slots[0].name, value, runtime)
    return Response(status=204), 204


def _activate(event_id: str, runtime: Runtime) -> None:
    ours, slots = _resolve(event_id)
    if slots is None:
        return  # ranked without deferActivation (or its record is gone): nothing to activate
    now = _clock().time()
    signer: IdSigner = current_app.extensions["storefront.ids"]
    issued = signer.issued(ours) or now
    window = runtime.config.reward.window_seconds
    for slot in slots:
        try:
            result = _writer().add_reward(ours, slot, "activate", {}, now, window + _UNJOINED_GRACE, issued + window,
                                          issued)  # fmt: skip
        except STORAGE_ERRORS as exc:
            log.error("activation of %s not stored: %s", ours, exc)
            raise ApiError(503, "storage_unavailable", "the activation cannot be stored right now; retry later",
                           None) from None  # fmt: skip
        if result == "late":
            raise ApiError(410, "reward_window_closed", "the event's window closed before it was activated",
                           "eventId")  # fmt: skip
        if result.startswith(ACCEPTED) or result == QUEUED:
            metrics.count_stored_reward(slot, result.partition(":")[2], "activate", {})


@_route("POST", "events/<event_id>/activate")
def pz_activate(event_id: str, version: str | None = None) -> tuple[Response, int]:
    """Say a deferred event was shown: its decision is learned from."""
    _activate(event_id, _runtime())
    return Response(status=204), 204


# --------------------------------------------------------------------------- multi-slot


@_route("POST", "multislot/rank")
def pz_rank_multi(version: str | None = None) -> tuple[Response, int]:
    """Rank the actions for several slots of a page (the config's slots, by name)."""
    runtime = _runtime()
    config = runtime.config
    body = _body(runtime)
    _unknown(body, {"contextFeatures", "actions", "slots", "eventId", "deferActivation"})
    now = _clock().time()
    context, ignored = _context(body, runtime, now)
    parsed = _actions(body.get("actions"), runtime)
    actions = parsed.ids
    ignored += parsed.ignored
    raw_slots = body.get("slots")
    if not isinstance(raw_slots, list) or not raw_slots:
        raise ApiError(400, "invalid_type", "must be a non-empty list of slots", "slots")
    names: list[str] = []
    excludes: dict[str, list[str]] = {}
    baselines: dict[str, str] = {}
    for i, raw in enumerate(raw_slots):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ApiError(400, "invalid_type", "must be an object with a slot 'id'", f"slots[{i}]")
        name = raw["id"]
        if name not in runtime.slot_names:
            raise ApiError(400, "unknown_slot", f"unknown slot {name!r}; slots: {', '.join(config.slot_names)}",
                           f"slots[{i}].id")  # fmt: skip
        if name in names:
            raise ApiError(400, "duplicate_slot", f"slot {name!r} is listed twice", f"slots[{i}].id")
        baseline = raw.get("baselineAction")
        if not isinstance(baseline, str) or baseline not in actions:
            raise ApiError(400, "invalid_value", "baselineAction must be the id of one of the actions",
                           f"slots[{i}].baselineAction")  # fmt: skip
        excludes[name] = _ids_of(raw.get("excludedActions"), f"slots[{i}].excludedActions", runtime, parsed)
        baselines[name] = baseline
        names.append(name)
    external, deferred = _external_id(body), _defer(body)
    ordered = sorted(names, key=config.slot_names.index)
    if not any(excludes.values()):
        event_id, page, _ = serve_page(runtime, now, context, ordered, actions, (), deferred=deferred,
                                       items=_adhoc(parsed), baselines=baselines)  # fmt: skip
    else:
        # Exclusions per slot: one page, filled slot by slot in page order, each without the items taken before.
        event_id, page, _ = _fill_each(runtime, now, context, ordered, parsed, excludes, baselines, deferred)
    chosen = {d.slot: d.item for d in page.decisions}
    client_id = _remember(external, event_id, [d.slot for d in page.decisions], deferred, runtime)
    slots_out = [{"id": name, "rewardActionId": chosen.get(name)} for name in names]
    return _answer({"eventId": client_id, "slots": slots_out}, ignored)


def _fill_each(runtime: Runtime, now: float, context: dict[str, Any], ordered: list[str], actions: _Actions,
               excludes: dict[str, list[str]], baselines: dict[str, str],
               deferred: bool) -> tuple[str, PageResult, bool]:  # fmt: skip
    """One page whose slots have their own exclusions: each slot is filled in page order from the actions neither
    excluded for it nor taken by an earlier slot (each decision's pmf is conditional on those), and the page is
    logged once.  ``constraints.publisher_cap`` is applied within each slot's fill, not across the page."""
    event_id = _ids().issue(now)
    page = PageResult()
    taken: set[str] = set()
    items = _adhoc(actions)
    for name in ordered:
        pool = [a for a in actions.ids if a not in taken and a not in excludes[name]]
        part = runtime.filler.fill(context, event_id, [name], pool, (), items, baselines)
        page.decisions += part.decisions
        page.unfilled += part.unfilled
        taken.update(d.item for d in part.decisions)
    return event_id, page, log_page(runtime, event_id, now, context, page, deferred, items)


def _adhoc(actions: _Actions) -> dict[str, Item] | None:
    """The ad-hoc actions as the page filler's request items (counted), or None."""
    if not actions.adhoc:
        return None
    metrics.PERSONALIZER_ADHOC.inc(len(actions.adhoc))
    return actions.adhoc


@_route("POST", "multislot/events/<event_id>/reward")
def pz_reward_multi(event_id: str, version: str | None = None) -> tuple[Response, int]:
    """Post rewards for slots of a ranked page: ``{"reward": [{"slotId", "value"}]}``."""
    runtime = _runtime()
    body = _body(runtime)
    entries = body.get("reward")
    if not isinstance(entries, list) or not entries:
        raise ApiError(400, "invalid_type", "must be a non-empty list of {slotId, value}", "reward")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("slotId"), str):
            raise ApiError(400, "invalid_type", "must be an object with a 'slotId' (string)", f"reward[{i}]")
        if entry["slotId"] not in runtime.slot_names:
            raise ApiError(400, "unknown_slot", f"unknown slot {entry['slotId']!r}", f"reward[{i}].slotId")
        parsed.append((entry["slotId"], _value(entry, f"reward[{i}].value")))
    ours, _ = _resolve(event_id)
    for slot, value in parsed:
        _reward(ours, slot, value, runtime)
    return Response(status=204), 204


@_route("POST", "multislot/events/<event_id>/activate")
def pz_activate_multi(event_id: str, version: str | None = None) -> tuple[Response, int]:
    """Say a deferred multi-slot event was shown: its decisions are learned from."""
    _activate(event_id, _runtime())
    return Response(status=204), 204


# --------------------------------------------------------------------------- configuration reads


def _duration(seconds: float) -> str:
    """ISO 8601, as Personalizer writes its time spans."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (
        f"{secs}S" if secs or not whole else "")  # fmt: skip


@_route("GET", "configurations/service")
def pz_configuration(version: str | None = None) -> tuple[Response, int]:
    """The service configuration Personalizer clients read at start, from the store config."""
    runtime = _runtime()
    config = runtime.config
    slot = config.slots[0]
    learning = "Apprentice" if all(runtime.states.get(s.name) is None and s.tier == "rules" for s in config.slots) \
        else "Online"  # fmt: skip
    return _json({
        "rewardWaitTime": _duration(config.reward.window_seconds),
        "defaultReward": config.reward.default,
        "rewardAggregation": "sum",
        "explorationPercentage": slot.exploration,
        "modelExportFrequency": "PT1M",
        "logRetentionDays": -1,
        "modelRetrainDays": 0,
        "learningMode": learning,
        "isAutoOptimizationEnabled": False,
    }, 200)  # fmt: skip


@_route("GET", "configurations/policy")
def pz_policy(version: str | None = None) -> tuple[Response, int]:
    """The learning policy: this service has no VW command line; the ladder's tiers per slot instead."""
    config = _runtime().config
    tiers = "; ".join(f"{s.name}: {s.tier}" for s in config.slots)
    return _json({"name": "storefront ladder", "arguments": f"tiers ({tiers}); see docs/ladder.md"}, 200)
