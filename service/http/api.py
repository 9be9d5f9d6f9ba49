"""The store-facing API: ``POST /v1/rank``, ``POST /v1/reward``, ``GET /v1/slots``.

Handlers parse and validate, call the bandit library, store, and serialise;
nothing else.  ``/v1/rank`` is the hot path: one Redis round trip (a Lua
script) per page, no per-request allocation of policies or schemas.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from bandit.config import Item
from bandit.eventlog.events import check_reward_number, logged_event
from bandit.page import PageResult
from service import metrics
from service.clock import Clock
from service.http.access import ApiKey, authorise
from service.http.errors import ApiError
from service.http.ids import IdSigner
from service.http.ladders import slot_status
from service.http.runtime import ConfigHolder, Runtime
from service.storage import STORAGE_ERRORS
from service.storage.protocols import ACCEPTED, DUPLICATE, LATE, UNKNOWN_SLOT, StorageStatus
from service.storage.writebehind import QUEUED, WriteBehind

log = logging.getLogger("storefront")
bp = Blueprint("v1", __name__, url_prefix="/v1")

_RANK_KEYS = frozenset({"context", "slots", "candidates", "exclude"})
_REWARD_KEYS = frozenset({"event_id", "slot", "event", "reward", "revenue"})
_JSON = "application/json"
# A decision stays in storage this long past its window if no learner joins it.
_UNJOINED_GRACE = 86400.0


def _runtime() -> Runtime:
    holder: ConfigHolder = current_app.extensions["storefront"]
    return holder.current()


def _clock() -> Clock:
    clock: Clock = current_app.extensions["storefront.clock"]
    return clock


def _writer() -> WriteBehind:
    writer: WriteBehind = current_app.extensions["storefront.writer"]
    return writer


def _status() -> StorageStatus:
    storage: StorageStatus = current_app.extensions["storefront.storage"]
    return storage


def _ids() -> IdSigner:
    signer: IdSigner = current_app.extensions["storefront.ids"]
    return signer


_ACTIONS = {"v1.rank": "rank", "v1.reward": "reward", "v1.slots": "slots"}


@bp.before_request
def _authorise() -> None:
    """The key the endpoint needs (unless the config leaves it open), and the key's rate limits."""
    action = _ACTIONS.get(request.endpoint or "")
    if action is not None and request.method != "OPTIONS":  # a browser's CORS preflight carries no key
        request.environ["storefront.key"] = authorise(action, _runtime().config.service.access)


def _key() -> ApiKey | None:
    key: ApiKey | None = request.environ.get("storefront.key")
    return key


def _body(runtime: Runtime) -> dict[str, Any]:
    limit = runtime.config.service.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body is larger than the limit of {limit} bytes", "body")
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise ApiError(413, "body_too_large", f"request body is larger than the limit of {limit} bytes", "body")
    if not raw:
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object", "body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}", "body") from None
    except RecursionError:  # e.g. 60,000 nested '[' fit under the size limit
        raise ApiError(400, "invalid_json", "request body is nested too deeply", "body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_type", "request body must be a JSON object", "body")
    if not _shallow(body):
        raise ApiError(400, "invalid_json", f"request body is nested more than {MAX_DEPTH} levels deep", "body")
    return body


#: The deepest nesting of objects and arrays a body may have (no endpoint needs more than a few levels).
MAX_DEPTH = 32


def _shallow(body: dict[str, Any]) -> bool:
    """Whether ``body`` nests objects and arrays at most :data:`MAX_DEPTH` deep (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _unknown_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise ApiError(400, "unknown_field", f"unknown field; allowed: {', '.join(sorted(allowed))}", key)


def _item_list(value: Any, field: str, runtime: Runtime, limit: int) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(400, "invalid_type", "must be a list of item ids", field)
    if len(value) > limit:
        raise ApiError(400, "too_many_items", f"at most {limit} items (service.max_candidates)", field)
    ids = runtime.item_ids
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(400, "invalid_type", "must be an item id (string)", f"{field}[{i}]")
        if item not in ids:
            raise ApiError(400, "unknown_item", f"unknown item {item!r}: not in the catalog", f"{field}[{i}]")
        if item in seen:
            raise ApiError(400, "duplicate_item", f"item {item!r} is listed twice", f"{field}[{i}]")
        seen.add(item)
    return value


@bp.post("/rank")
def rank() -> Response:
    """Fill the page's slots for one shopper and log every decision."""
    started = time.perf_counter()
    runtime = _runtime()
    config = runtime.config
    body = _body(runtime)
    if len(body) > 1 or "context" not in body:
        _unknown_keys(body, _RANK_KEYS)

    raw_context = body.get("context", {})
    if not isinstance(raw_context, dict):
        raise ApiError(400, "invalid_type", "must be a JSON object of context fields", "context")
    now = _clock().time()  # stamps the event, and fills `default: now` hour and day fields
    context, problems = config.context.normalise(raw_context, now=datetime.fromtimestamp(now, UTC))
    if problems:
        name, message = problems[0]
        code = "unknown_field" if name not in config.context.by_name else (
            "missing_field" if raw_context.get(name) is None else "invalid_value")  # fmt: skip
        raise ApiError(400, code, message, f"context.{name}")

    slots = body.get("slots")
    if slots is not None:
        if not isinstance(slots, list) or not slots:
            raise ApiError(400, "invalid_type", "must be a non-empty list of slot names", "slots")
        for i, slot in enumerate(slots):
            if not isinstance(slot, str):
                raise ApiError(400, "invalid_type", "must be a slot name (string)", f"slots[{i}]")
            if slot not in runtime.slot_names:
                raise ApiError(
                    400, "unknown_slot", f"unknown slot {slot!r}; slots: {', '.join(config.slot_names)}", f"slots[{i}]"
                )
        if len(set(slots)) != len(slots):
            raise ApiError(400, "duplicate_slot", "a slot is listed twice", "slots")
    limit = config.service.max_candidates
    candidates = body.get("candidates")
    if candidates is not None:
        candidates = _item_list(candidates, "candidates", runtime, limit)
    exclude = body.get("exclude")
    exclude = _item_list(exclude, "exclude", runtime, limit) if exclude is not None else ()

    event_id, page, logged = serve_page(runtime, now, context, slots, candidates, exclude)
    out_slots = []
    for decision in page.decisions:
        out_slots.append({
            "slot": decision.slot,
            "item": decision.item,
            "propensity": decision.propensity,
            "tier": decision.tier,
            "explanation": decision.explanation,
        })  # fmt: skip
    for name in page.unfilled:
        out_slots.append({"slot": name, "item": None, "propensity": None, "tier": None,
                          "explanation": "no eligible candidate"})  # fmt: skip
    payload = {"event_id": event_id, "config_version": config.version, "logged": logged, "slots": out_slots}
    response = Response(json.dumps(payload, separators=(",", ":")), mimetype=_JSON)
    metrics.RANK_LATENCY.observe(time.perf_counter() - started)
    return response


def serve_page(
    runtime: Runtime, now: float, context: dict[str, Any], slots: list[str] | None, candidates: list[str] | None,
    exclude: Any, deferred: bool = False, items: Mapping[str, Item] | None = None,
    baselines: Mapping[str, str] | None = None,
) -> tuple[str, PageResult, bool]:  # fmt: skip
    """Fill the slots for a validated context, count the decisions and hand the page to the write-behind.

    Returns the new event id, the page, and whether it is kept (in Redis, or spooled while Redis is away).
    ``deferred``: the page may not be shown; its decisions are learned from only once activated.  ``items``,
    ``baselines``: a request's own items and baselines (:meth:`bandit.page.PageFiller.fill`)."""
    event_id = _ids().issue(now)
    page = runtime.filler.fill(context, event_id, slots, candidates, exclude, items, baselines)
    return event_id, page, log_page(runtime, event_id, now, context, page, deferred, items)


def log_page(runtime: Runtime, event_id: str, now: float, context: dict[str, Any], page: PageResult,
             deferred: bool = False, items: Mapping[str, Item] | None = None) -> bool:  # fmt: skip
    """Count a filled page's decisions and hand it to the write-behind; whether it is kept.  The request's own
    items (not in the catalog) are logged with their publisher and features, so the log says what they were."""
    observe = runtime.observe.decision
    for decision in page.decisions:
        observe(decision)
    for name in page.unfilled:
        metrics.UNFILLED.labels(name).inc()
    if not page.decisions:
        return False
    config = runtime.config
    window = config.reward.window_seconds
    event = logged_event(event_id, now, window, config.version, context, page.decisions)
    if deferred:
        event["deferred"] = True
    if items:
        event["actions"] = {item_id: {"publisher": item.publisher, "features": dict(item.features)}
                            for item_id, item in items.items()}  # fmt: skip
    # Handed to the worker's write-behind: in Redis within the flush interval, or spooled while Redis is away;
    # False only when it cannot be kept (no spool, or the spool full).  The page is answered anyway.
    return _writer().log_event(event, window + _UNJOINED_GRACE)


@bp.post("/reward")
def reward() -> tuple[Response, int]:
    """Accept a shopper event or an explicit reward for one slot of a ranked page."""
    runtime = _runtime()
    config = runtime.config
    body = _body(runtime)
    result = accept_reward(body, runtime, config.reward.window_seconds)
    return Response(json.dumps(result), mimetype=_JSON), 202


def accept_reward(body: dict[str, Any], runtime: Runtime, window: float) -> dict[str, Any]:
    """Validate and store one reward post (this API's body); a refusal is counted by outcome, then raised."""
    try:
        return _accept_reward(body, runtime, window)
    except ApiError as exc:
        outcome = {404: "unknown", 410: "late", 503: "error"}.get(exc.status, "invalid")
        metrics.REWARD_POSTS.labels(outcome).inc()
        if outcome in ("unknown", "late"):
            metrics.JOIN_OUTCOMES.labels(outcome).inc()
        raise


def _accept_reward(body: dict[str, Any], runtime: Runtime, window: float) -> dict[str, Any]:
    _unknown_keys(body, _REWARD_KEYS)
    for name in ("event_id", "slot"):
        if name not in body:
            raise ApiError(400, "missing_field", f"'{name}' is required", name)
        if not isinstance(body[name], str):
            raise ApiError(400, "invalid_type", "must be a string", name)
    event_id, slot = body["event_id"], body["slot"]
    if slot not in runtime.slot_names:
        raise ApiError(400, "unknown_slot", f"unknown slot {slot!r}; slots: {', '.join(sorted(runtime.slot_names))}",
                       "slot")  # fmt: skip
    has_event, has_reward = "event" in body, "reward" in body
    if has_event == has_reward:
        raise ApiError(400, "missing_field", "send exactly one of 'event' (e.g. click) or 'reward' (a number)",
                       "event" if not has_event else "reward")  # fmt: skip
    payload: Any
    key = _key()
    if key is not None and key.role == "browser" and (has_reward or "revenue" in body):
        # A publishable key is in every page's source: anyone can use it.  Clicks and carts are what a page sees;
        # a purchase's revenue and explicit reward values come from the store's servers (a backend key).
        field = "reward" if has_reward else "revenue"
        raise ApiError(403, "forbidden", f"key {key.name!r} is a browser key: it posts events without revenue; "
                       f"send '{field}' from your servers with a backend key", field)  # fmt: skip
    bounds = runtime.config.reward
    if has_event:
        kind = body["event"]
        if not isinstance(kind, str):
            raise ApiError(400, "invalid_type", "must be an event type (string)", "event")
        if kind not in runtime.event_types:
            raise ApiError(400, "unknown_event_type",
                           f"unknown event type {kind!r}; configured: {', '.join(sorted(runtime.event_types))}",
                           "event")  # fmt: skip
        payload = {}
        if "revenue" in body:
            if kind != "purchase":
                # Only a purchase's revenue counts in the reward; accepting it elsewhere would lose it silently.
                raise ApiError(400, "invalid_value", f"'revenue' goes with a purchase event, not {kind!r}", "revenue")
            try:
                revenue = check_reward_number(body["revenue"])
            except ValueError as exc:
                raise ApiError(400, "invalid_value", str(exc), "revenue") from None
            if revenue < 0:
                raise ApiError(400, "invalid_value", "must be ≥ 0", "revenue")
            if bounds.max_revenue is not None and revenue > bounds.max_revenue:
                raise ApiError(400, "invalid_value", f"{revenue:g} is above reward.max_revenue "
                               f"({bounds.max_revenue:g}) in the config", "revenue")  # fmt: skip
            payload["revenue"] = revenue
    else:
        if "revenue" in body:
            raise ApiError(400, "unknown_field", "'revenue' goes with an event (e.g. purchase), not an explicit reward",
                           "revenue")  # fmt: skip
        kind = "reward"
        try:
            payload = check_reward_number(body["reward"])
        except ValueError as exc:
            raise ApiError(400, "invalid_value", str(exc), "reward") from None
        if not math.isfinite(payload):  # pragma: no cover - check_reward_number already refuses
            raise ApiError(400, "invalid_value", "must be a finite number", "reward")
        if bounds.range is not None and not bounds.range[0] <= payload <= bounds.range[1]:
            low, high = bounds.range
            raise ApiError(400, "invalid_value", f"{payload:g} is outside reward.range [{low:g}, {high:g}] in the "
                           "config", "reward")  # fmt: skip

    now = _clock().time()
    issued = _ids().issued(event_id)
    if issued is None:  # checked before Redis is touched: a forged, altered or another store's id costs nothing
        raise ApiError(404, "unknown_event", "no such event: not an id this store issued (its signature does not "
                       "match)", "event_id")  # fmt: skip
    try:
        result = _writer().add_reward(
            event_id, slot, kind, payload, now, window + _UNJOINED_GRACE, issued + window, issued
        )
    except STORAGE_ERRORS as exc:
        log.error("reward for %s not stored: %s", event_id, exc)
        raise ApiError(503, "storage_unavailable", "rewards cannot be stored right now; retry later", None) from None
    if result == QUEUED:
        metrics.REWARD_POSTS.labels("queued").inc()
        return {"status": QUEUED, "note": "recorded as soon as its page (or storage) is there; do not retry"}
    if result.startswith(ACCEPTED):
        tier = result.partition(":")[2]
        metrics.REWARD_POSTS.labels("accepted").inc()
        metrics.count_stored_reward(slot, tier, kind, payload)
        return {"status": ACCEPTED}
    if result == DUPLICATE:
        metrics.REWARD_POSTS.labels("duplicate").inc()
        return {"status": DUPLICATE, "note": f"'{kind}' was already recorded for this slot; the first one counts"}
    if result == UNKNOWN_SLOT:
        raise ApiError(404, "unknown_decision", f"event {event_id} did not fill slot {slot!r}", "slot")
    if result == LATE or issued + window < now:
        raise ApiError(410, "reward_window_closed",
                       f"the reward window of this event closed (window {window:g}s); the reward is counted as late",
                       "event_id")  # fmt: skip
    raise ApiError(404, "unknown_event", "no such event (never logged, or expired)", "event_id")


@bp.get("/slots")
def slots() -> Response:
    """Each slot's live tier and escalation stage, config version and counters."""
    runtime = _runtime()
    config = runtime.config
    try:
        counts = _status().counts()
        available = True
    except STORAGE_ERRORS:
        counts, available = {}, False
    out = []
    for slot in config.slots:
        decisions = {
            key.rsplit(":", 1)[1]: value for key, value in counts.items() if key.startswith(f"decisions:{slot.name}:")
        }
        out.append({
            "slot": slot.name,
            "position": slot.position,
            **slot_status(slot, runtime.states.get(slot.name)),
            "exploration": slot.exploration,
            "config_version": config.version,
            "counts": {
                "decisions": sum(decisions.values()),
                "decisions_by_tier": decisions,
                "rewards": counts.get(f"rewards:{slot.name}", 0),
                "joined": counts.get(f"joined:{slot.name}", 0),
                "defaulted": counts.get(f"defaulted:{slot.name}", 0),
            },
        })  # fmt: skip
    payload = {"store": config.name, "config_version": config.version, "counts_available": available, "slots": out}
    return Response(json.dumps(payload), mimetype=_JSON)
