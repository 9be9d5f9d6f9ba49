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

- ``actions`` -> candidates: action ids must be catalog items (their features come from the catalog; the
  request's are not used); ``excludedActions`` -> exclusions; a multi-slot ``baselineAction`` must be an action.
- ``contextFeatures`` (a list of objects, nested objects flattened with ``.``) -> the context: features
  named like a declared context field (the full dotted name, or its last part) are used; the others are
  ignored, named in the ``X-Storefront-Ignored-Features`` header and counted.
- ``eventId`` (the client's own) -> kept beside the service's signed id in Redis for the window; without
  one the answer carries the service's id.
- ``deferActivation`` -> the decisions are logged as deferred and learned from only once activated
  (``activate``); rewards for a page never activated are kept in the log and not learned from.
- Apprentice mode -> a slot on its rules tier serving its baseline; ``configurations/service`` reports
  ``learningMode`` from the slots' tiers.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request

from bandit.page import PageResult
from service import metrics
from service.http.access import authorise
from service.http.api import _body, _clock, _ids, _runtime, _writer, accept_reward, log_page, serve_page
from service.http.errors import ApiError
from service.http.ids import IdSigner
from service.http.runtime import Runtime
from service.storage.protocols import ACCEPTED, AccessStore
from service.storage.writebehind import QUEUED

log = logging.getLogger("storefront")
bp = Blueprint("personalizer", __name__, url_prefix="/personalizer")

#: The version segments older clients put in the path (the newer ``azure-ai-personalizer`` sends none).
VERSIONS = ("v1.0", "v1.1-preview.1", "v1.1-preview.2", "v1.1-preview.3")
_JSON = "application/json"
_MAX_EVENT_ID = 256
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
    if value is None:
        return {}, []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ApiError(400, "invalid_type", "must be a list of JSON objects of features", "contextFeatures")
    declared = runtime.config.context.by_name
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
                               f"contextFeatures.{target}")  # fmt: skip
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


def _ids_of(value: Any, field: str, runtime: Runtime, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ApiError(400, "invalid_type", "must be a non-empty list" if required else "must be a list", field)
    if len(value) > runtime.config.service.max_candidates:
        raise ApiError(400, "too_many_items", f"at most {runtime.config.service.max_candidates} "
                       "(service.max_candidates)", field)  # fmt: skip
    out: list[str] = []
    for i, entry in enumerate(value):
        item = entry.get("id") if isinstance(entry, dict) and field == "actions" else entry
        where = f"{field}[{i}].id" if field == "actions" else f"{field}[{i}]"
        if not isinstance(item, str):
            raise ApiError(400, "invalid_type", "must be an action id (string)", where)
        if item not in runtime.item_ids:
            message = f"action {item!r} is not in the catalog: only catalog items are ranked (add it to catalog.items)"
            raise ApiError(400, "unknown_item", message, where)
        if item in out:
            raise ApiError(400, "duplicate_item", f"action {item!r} is listed twice", where)
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
    except (redis.RedisError, OSError) as exc:
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
    actions = _ids_of(body.get("actions"), "actions", runtime, required=True)
    excluded = _ids_of(body.get("excludedActions"), "excludedActions", runtime, required=False)
    external, deferred = _external_id(body), _defer(body)
    slot = runtime.config.slots[0].name
    event_id, page, _ = serve_page(runtime, now, context, [slot], actions, excluded, deferred=deferred)
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
    except (redis.RedisError, OSError):
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
        except (redis.RedisError, OSError) as exc:
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
    actions = _ids_of(body.get("actions"), "actions", runtime, required=True)
    raw_slots = body.get("slots")
    if not isinstance(raw_slots, list) or not raw_slots:
        raise ApiError(400, "invalid_type", "must be a non-empty list of slots", "slots")
    names: list[str] = []
    excludes: dict[str, list[str]] = {}
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
        excludes[name] = _ids_of(raw.get("excludedActions"), f"slots[{i}].excludedActions", runtime, required=False)
        names.append(name)
    external, deferred = _external_id(body), _defer(body)
    ordered = sorted(names, key=config.slot_names.index)
    if not any(excludes.values()):
        event_id, page, _ = serve_page(runtime, now, context, ordered, actions, (), deferred=deferred)
        chosen = {d.slot: d.item for d in page.decisions}
    else:
        # Exclusions per slot: one page, filled slot by slot in page order, each without the items taken before.
        event_id, page, _ = _fill_each(runtime, now, context, ordered, actions, excludes, deferred)
        chosen = {d.slot: d.item for d in page.decisions}
    client_id = _remember(external, event_id, [d.slot for d in page.decisions], deferred, runtime)
    slots_out = [{"id": name, "rewardActionId": chosen.get(name)} for name in names]
    return _answer({"eventId": client_id, "slots": slots_out}, ignored)


def _fill_each(runtime: Runtime, now: float, context: dict[str, Any], ordered: list[str], actions: list[str],
               excludes: dict[str, list[str]], deferred: bool) -> tuple[str, PageResult, bool]:  # fmt: skip
    """One page whose slots have their own exclusions: each slot is filled in page order from the actions neither
    excluded for it nor taken by an earlier slot (each decision's pmf is conditional on those), and the page is
    logged once.  ``constraints.publisher_cap`` is applied within each slot's fill, not across the page."""
    event_id = _ids().issue(now)
    page = PageResult()
    taken: set[str] = set()
    for name in ordered:
        pool = [a for a in actions if a not in taken and a not in excludes[name]]
        part = runtime.filler.fill(context, event_id, [name], pool, ())
        page.decisions += part.decisions
        page.unfilled += part.unfilled
        taken.update(d.item for d in part.decisions)
    return event_id, page, log_page(runtime, event_id, now, context, page, deferred)


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
