"""The OpenAPI 3.1 document of the service, built from the store config it serves.

``GET /openapi.json`` serves :func:`openapi_document` for the config in force,
so the document describes *this* store: the context fields with their types,
allowed values, ranges and required flags, the slot names and item ids as
enums, the configured event types and the reward rule with its weights.  It is
the machine-readable source of truth of the API; ``docs/api.md`` is the prose.

Every status an endpoint can answer is listed with the error codes it can
carry (:data:`ERROR_CODES` is the one table of them), and every request example
is a valid request for the config: ``tests/test_openapi.py`` sends each one to
the app and checks the answer against the documented schema.

Schemas are JSON Schema 2020-12 (the dialect OpenAPI 3.1 uses).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from bandit.config import DAYS, ContextField, StoreConfig
from bandit.escalation.state import STAGES

API_VERSION = "1.0.0"

#: Every error code the service answers with: ``code -> (HTTP status, meaning)``.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "The body is empty or not valid JSON (field `body`)."),
    "invalid_type": (400, "A value has the wrong JSON type, e.g. the body is not an object or `slots` is not a list."),
    "unknown_field": (
        400,
        "A field the endpoint does not know (a top-level key, a context field not declared in the config), or "
        "`revenue` sent with an explicit `reward`.",
    ),
    "missing_field": (
        400,
        "A required field is absent (or null): a required context field, `event_id`, `slot`; or neither / both of "
        "`event` and `reward` were sent.",
    ),
    "invalid_value": (
        400,
        "A value of the right type that is not allowed: an unknown category value, a number out of its range, "
        "NaN or Infinity, a negative revenue, a reward that is not a finite number.",
    ),
    "unknown_slot": (400, "A slot name that is not in the config."),
    "duplicate_slot": (400, "The same slot is listed twice in `slots`."),
    "unknown_item": (400, "An item id in `candidates` or `exclude` that is not in the catalog."),
    "duplicate_item": (400, "The same item is listed twice in `candidates` or `exclude`."),
    "too_many_items": (400, "`candidates` or `exclude` is longer than `service.max_candidates`."),
    "unknown_event_type": (400, "An `event` that is not one of the configured event types (`reward.events`)."),
    "unknown_event": (
        404,
        "No such event: the id was not issued by this service, or the event was never logged (its page was "
        "served while storage was down) or has expired.",
    ),
    "unknown_decision": (404, "The event exists but did not fill this slot (it was not requested, or left empty)."),
    "reward_window_closed": (
        410,
        "The event's reward window has closed; the reward is counted as late in the metrics and not learned from.",
    ),
    "body_too_large": (413, "The request body is larger than `service.max_body_bytes` (field `body`)."),
    "storage_unavailable": (503, "Redis is unreachable, so the reward cannot be stored; retry later."),
    "admin_disabled": (
        404,
        "The admin API is off: no token is configured. Set `STOREFRONT_ADMIN_TOKEN` in the service's environment and "
        "send it as `Authorization: Bearer <token>`.",
    ),
    "unauthorized": (401, "An admin endpoint was called without the admin token, or with a wrong one."),
    "invalid_transition": (
        409,
        "The admin action does not apply to the slot's stage, e.g. `promote` with no challenger or `rollback` of a "
        "slot already on rules with nothing to roll back; the message says why.",
    ),
    "concurrent_update": (409, "The slot's state kept changing while an admin action was applied; retry."),
    "not_found": (404, "No endpoint at this path."),
    "method_not_allowed": (405, "The endpoint exists but not for this HTTP method; the `Allow` header lists those."),
    "internal": (500, "A bug in the service; the service log has the traceback. Never expected."),
}

#: Codes some endpoint answers with another status than their main one in :data:`ERROR_CODES`.
EXTRA_STATUSES: dict[str, tuple[int, ...]] = {"unknown_slot": (404,)}


def statuses(code: str) -> tuple[int, ...]:
    """Every HTTP status ``code`` is answered with."""
    return (ERROR_CODES[code][0], *EXTRA_STATUSES.get(code, ()))


_RANK_400 = (
    "invalid_json",
    "invalid_type",
    "unknown_field",
    "missing_field",
    "invalid_value",
    "unknown_slot",
    "duplicate_slot",
    "unknown_item",
    "duplicate_item",
    "too_many_items",
)
_REWARD_400 = (
    "invalid_json",
    "invalid_type",
    "unknown_field",
    "missing_field",
    "invalid_value",
    "unknown_slot",
    "unknown_event_type",
)
#: What the response's ``tier`` can say: the ladder's tiers, and ``pin`` for a pinned item.
SERVED_TIERS = ("rules", "tree", "gradient", "pin")
_STAGES = STAGES
_LADDER_FIELDS = ("tier", "mode", "stage", "share", "incumbent_version", "challenger_version", "frozen", "last_gate")
# An id of the documented shape; examples use it where a real id from /v1/rank goes.
EXAMPLE_EVENT_ID = "0190a4f3c2b7e1d2c3b4a5f6e7d"

_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 8


def openapi_document(config: StoreConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``config``, cached per config version.

    The returned dict is shared between calls: treat it as read-only.

    >>> from pathlib import Path
    >>> from bandit.config import load_config
    >>> config = load_config(Path(__file__).parent.parent / "examples" / "storefront.yaml")
    >>> doc = openapi_document(config)
    >>> doc["openapi"], [path for path in sorted(doc["paths"]) if not path.startswith("/v1/admin/")]
    ('3.1.0', ['/healthz', '/metrics', '/openapi.json', '/readyz', '/v1/rank', '/v1/reward', '/v1/slots'])
    >>> sorted(doc["paths"])[4:6]
    ['/v1/admin/slots', '/v1/admin/slots/{slot}']
    >>> doc["components"]["schemas"]["SlotName"]["enum"], openapi_document(config) is doc
    (['hero', 'row-1', 'row-2'], True)
    """
    with _cache_lock:
        doc = _cache.get(config.version)
        if doc is not None:
            _cache.move_to_end(config.version)
            return doc
    doc = _build(config)
    with _cache_lock:
        _cache[config.version] = doc
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return doc


# --------------------------------------------------------------------------- building blocks


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"description": description, "content": {"application/json": content}}


def _error(status: int, codes: tuple[str, ...], example: tuple[str, str | None, str]) -> dict[str, Any]:
    """An error response whose ``code`` is one of ``codes`` (all answered with ``status``).

    ``example`` is ``(code, field, message)`` of a typical instance.
    """
    assert all(status in statuses(c) for c in codes), codes
    lines = "\n".join(f"- `{c}`: {ERROR_CODES[c][1]}" for c in codes)
    schema = {
        "allOf": [_ref("Error")],
        "properties": {"error": {"properties": {"code": {"enum": list(codes)}}}},
    }
    code, field, message = example
    return _json(
        schema, f"Error codes:\n{lines}", {code: {"error": {"code": code, "message": message, "field": field}}}
    )


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _context_property(spec: ContextField) -> dict[str, Any]:
    kind = spec.kind
    prop: dict[str, Any]
    if kind == "category":
        prop = {"type": "string", "enum": list(spec.values)}
    elif kind == "bool":
        prop = {"type": "boolean"}
    elif kind == "day_of_week":
        full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        prop = {"type": "string", "enum": [*DAYS, *full], "description": "Day of the week; case-insensitive."}
    elif kind == "hour":
        prop = {"type": "integer", "minimum": 0, "maximum": 23, "description": "Hour of the day, 0-23."}
    else:  # number, integer
        prop = {"type": "integer" if kind == "integer" else "number"}
        if spec.min is not None:
            prop["minimum"] = _num(spec.min)
        if spec.max is not None:
            prop["maximum"] = _num(spec.max)
    notes = [f"Config type `{kind}`."]
    if spec.required:
        notes.append("Required.")
    elif spec.default == "now":
        notes.append("Defaults to the server's clock (UTC) when left out.")
    elif spec.default is not None:
        prop["default"] = spec.default
        notes.append(f"Defaults to `{spec.default!r}` when left out.")
    if not spec.required:
        # normalise() treats null as absent; the schema says so rather than refusing what the service accepts.
        notes.append("`null` is the same as leaving it out.")
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
        prop["type"] = [prop["type"], "null"]
    prop["description"] = " ".join([prop.get("description", ""), *notes]).strip()
    return prop


def _example_value(spec: ContextField) -> Any:
    if spec.kind == "category":
        return spec.values[0]
    if spec.kind == "bool":
        return True
    if spec.kind == "hour":
        return 21
    if spec.kind == "day_of_week":
        return "sat"
    value = 30.0
    if spec.min is not None:
        value = max(value, spec.min)
    if spec.max is not None:
        value = min(value, spec.max)
    return int(value) if spec.kind == "integer" else value


# --------------------------------------------------------------------------- the document


def _build(config: StoreConfig) -> dict[str, Any]:
    slot_names = list(config.slot_names)
    item_ids = list(config.catalog.ids)
    event_types = list(config.reward.events)
    fields = config.context.fields
    required = [f.name for f in fields if f.required]
    limit = config.service.max_candidates
    max_body = config.service.max_body_bytes
    reward = config.reward
    too_large = f"request body is larger than the limit of {max_body} bytes"

    weights = ", ".join(f"`{name}` {_num(w)}" for name, w in reward.events.items())
    reward_rule = (
        "The reward of one slot decision is the sum of the weights of the distinct event types posted for it "
        f"({weights}), plus `revenue_weight` ({_num(reward.revenue_weight)}) × the revenue of the first `purchase`, "
        "plus the last explicit `reward` posted, if any. The first post of each event type counts; repeats are "
        "answered `duplicate` and ignored, so retrying a post is safe. An explicit `reward` may be posted again: the "
        f"last one counts. A decision with nothing posted inside the reward window ({_num(reward.window_seconds)} s) "
        f"gets the default reward ({_num(reward.default)}). Revenue only counts on a `purchase`."
    )

    context_example = {f.name: _example_value(f) for f in fields}
    required_example = {f.name: _example_value(f) for f in fields if f.required}
    rank_examples: dict[str, Any] = {
        "whole_page": {"context": context_example},
        "required_context_only": {"context": required_example},
        "some_slots": {"context": required_example, "slots": list(reversed(slot_names[-2:]))},
        "candidates_and_exclude": {
            "context": required_example,
            "candidates": item_ids[: min(len(item_ids), 8, limit)],
            "exclude": item_ids[1:2],
        },
    }
    first_slot = slot_names[0]
    click = "click" if "click" in event_types else event_types[0]
    reward_examples: dict[str, Any] = {"event": {"event_id": EXAMPLE_EVENT_ID, "slot": first_slot, "event": click}}
    if "purchase" in event_types:
        reward_examples["purchase_with_revenue"] = {
            "event_id": EXAMPLE_EVENT_ID,
            "slot": first_slot,
            "event": "purchase",
            "revenue": 29.99,
        }
    reward_examples["explicit_reward"] = {"event_id": EXAMPLE_EVENT_ID, "slot": first_slot, "reward": 0.5}

    default_items = {slot.name: slot.default[0] for slot in config.slots}
    rank_response_example = {
        "event_id": EXAMPLE_EVENT_ID,
        "config_version": config.version,
        "logged": True,
        "slots": [
            {"slot": name, "item": default_items[name], "propensity": 0.9, "tier": "rules", "explanation": "default"}
            for name in slot_names
        ],
    }

    ladder_properties: dict[str, Any] = {
        "tier": {
            "type": "string",
            "description": "The tier serving the slot: its ladder's incumbent (`rules`, `tree`), else the configured "
            "tier.",
        },
        "mode": {"type": "string", "enum": ["auto", "manual", "off"], "description": "The slot's escalation mode."},
        "stage": {
            "type": "string",
            "enum": list(_STAGES),
            "description": "Escalation stage: `incumbent` (no challenger), `shadow` (challenger logged beside every "
            "decision, not served), `approval` (gate passed, waiting for an operator), `ramp`, `promoted`.",
        },
        "share": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Traffic share of the secondary arm: the challenger during a ramp, the previous tier as "
            "holdout after a promotion; 0 otherwise.",
        },
        "incumbent_version": {"type": ["string", "null"], "description": "Snapshot version of the incumbent model."},
        "challenger_version": {"type": ["string", "null"], "description": "Snapshot version of the challenger."},
        "frozen": {"type": "boolean", "description": "An operator froze the slot: no automatic transition."},
        "last_gate": {
            "type": ["object", "null"],
            "description": "The last gate result: `passed`, `reason`, the estimator, `n`, the values and the lift "
            "with its confidence bounds (absolute, and relative to the incumbent's value), the interval's "
            "`confidence`, and which `look` of how many `looks` it was.",
        },
    }

    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "description": "Every error, whatever the endpoint or status: never an HTML page.",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "field"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string", "enum": list(ERROR_CODES), "description": "Stable, for programs."},
                        "message": {"type": "string", "description": "For people; may change between releases."},
                        "field": {
                            "type": ["string", "null"],
                            "description": "Path of the offending field (`context.age`, `candidates[3]`, `slot`), "
                            "`body` for the request as a whole, null when no field is at fault.",
                        },
                    },
                }
            },
        },
        "SlotName": {"type": "string", "enum": slot_names, "description": "A slot of the page, from the config."},
        "ItemId": {"type": "string", "enum": item_ids, "description": "An item of the catalog, from the config."},
        "EventId": {
            "type": "string",
            "description": "Opaque id of one ranked page, as `/v1/rank` returned it. It carries the time it was "
            "issued and will be signed in a later release: store and send it back as a string, never parse it.",
            "examples": [EXAMPLE_EVENT_ID],
        },
        "Context": {
            "type": "object",
            "description": "The shopper context, as declared under `context:` in the config. Unknown fields are "
            "refused; fields left out get their default (the filled-in context is what gets logged).",
            "additionalProperties": False,
            "required": required,
            "properties": {f.name: _context_property(f) for f in fields},
        },
        "ItemList": {
            "type": ["array", "null"],
            "items": _ref("ItemId"),
            "uniqueItems": True,
            "maxItems": limit,
            "description": f"Distinct catalog item ids, at most {limit} (`service.max_candidates`). "
            "`null` is the same as leaving it out.",
        },
        "RankRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["context"] if required else [],
            "properties": {
                "context": _ref("Context"),
                "slots": {
                    "type": ["array", "null"],
                    "items": _ref("SlotName"),
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "The slots to fill; all slots of the page when left out (or null). They are "
                    "filled, and returned, in page order whatever the order here.",
                },
                "candidates": {
                    "allOf": [_ref("ItemList")],
                    "description": "Restrict every slot to these items (e.g. what is in stock). The whole catalog "
                    "when left out. An empty list leaves every slot empty.",
                },
                "exclude": {
                    "allOf": [_ref("ItemList")],
                    "description": "Items never to show on this page (e.g. already owned), on top of the config's "
                    "`constraints.exclude`.",
                },
            },
        },
        "FilledSlot": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slot", "item", "propensity", "tier", "explanation"],
            "properties": {
                "slot": _ref("SlotName"),
                "item": _ref("ItemId"),
                "propensity": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "The probability the serving policy gave this item (1 for a pinned item).",
                },
                "tier": {
                    "type": "string",
                    "enum": list(SERVED_TIERS),
                    "description": "Who chose: a tier of the ladder, or `pin` for a pinned item.",
                },
                "explanation": {
                    "type": "string",
                    "description": "Why, for people: `rule:<name>`, `default`, `explore; ...`, `pin`.",
                },
            },
        },
        "UnfilledSlot": {
            "type": "object",
            "description": "A requested slot no eligible item was left for (exclusions, candidates, publisher cap).",
            "additionalProperties": False,
            "required": ["slot", "item", "propensity", "tier", "explanation"],
            "properties": {
                "slot": _ref("SlotName"),
                "item": {"type": "null"},
                "propensity": {"type": "null"},
                "tier": {"type": "null"},
                "explanation": {"const": "no eligible candidate"},
            },
        },
        "RankResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["event_id", "config_version", "logged", "slots"],
            "properties": {
                "event_id": _ref("EventId"),
                "config_version": {"type": "string", "description": "Version (hash) of the config that served."},
                "logged": {
                    "type": "boolean",
                    "description": "True when the decisions were logged, so rewards can be posted for them. False "
                    "when storage was down (the page is still served, by the rules tier) or when no slot was "
                    "filled; rewards for an unlogged page answer 404 `unknown_event`.",
                },
                "slots": {
                    "type": "array",
                    "description": "One entry per requested slot, in page order.",
                    "items": {"oneOf": [_ref("FilledSlot"), _ref("UnfilledSlot")]},
                },
            },
        },
        "RewardEvent": {
            "type": "object",
            "title": "A shopper event",
            "additionalProperties": False,
            "required": ["event_id", "slot", "event"],
            "properties": {
                "event_id": _ref("EventId"),
                "slot": _ref("SlotName"),
                "event": {"type": "string", "enum": event_types, "description": "A configured event type."},
                "revenue": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Revenue of a `purchase` (a finite number ≥ 0); ignored on other event types.",
                },
            },
        },
        "RewardValue": {
            "type": "object",
            "title": "An explicit reward",
            "additionalProperties": False,
            "required": ["event_id", "slot", "reward"],
            "properties": {
                "event_id": _ref("EventId"),
                "slot": _ref("SlotName"),
                "reward": {"type": "number", "description": "A finite number; the last one posted counts."},
            },
        },
        "RewardRequest": {
            "description": "Exactly one of `event` and `reward`. " + reward_rule,
            "oneOf": [_ref("RewardEvent"), _ref("RewardValue")],
        },
        "RewardResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status"],
            "properties": {
                "status": {
                    "type": "string",
                    "enum": ["accepted", "duplicate"],
                    "description": "`accepted`: recorded. `duplicate`: this event type was already recorded for "
                    "this slot; the first one counts and this one is ignored.",
                },
                "note": {"type": "string", "description": "Present with `duplicate`, for people."},
            },
        },
        "SlotsResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["store", "config_version", "counts_available", "slots"],
            "properties": {
                "store": {"type": "string"},
                "config_version": {"type": "string"},
                "counts_available": {
                    "type": "boolean",
                    "description": "False when storage is unreachable: the counts are then all zero.",
                },
                "slots": {"type": "array", "items": _ref("SlotStatus")},
            },
        },
        "SlotStatus": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slot", "position", *_LADDER_FIELDS, "exploration", "config_version", "counts"],
            "properties": {
                "slot": _ref("SlotName"),
                "position": {"type": "integer", "minimum": 0, "description": "Page order; 0 is filled first."},
                **ladder_properties,
                "exploration": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "config_version": {"type": "string"},
                "counts": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["decisions", "decisions_by_tier", "rewards", "joined", "defaulted"],
                    "properties": {
                        "decisions": {"type": "integer", "minimum": 0},
                        "decisions_by_tier": {
                            "type": "object",
                            "additionalProperties": {"type": "integer", "minimum": 0},
                        },
                        "rewards": {"type": "integer", "minimum": 0, "description": "Rewards accepted."},
                        "joined": {"type": "integer", "minimum": 0, "description": "Decisions joined by the learner."},
                        "defaulted": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Joined decisions that got the default reward (nothing posted).",
                        },
                    },
                },
            },
        },
        "AdminSlotStatus": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "slot",
                "position",
                *_LADDER_FIELDS,
                "incumbent",
                "challenger",
                "previous",
                "seen",
                "state_version",
                "rev",
                "cursor",
                "config_version",
            ],
            "properties": {
                "slot": _ref("SlotName"),
                "position": {"type": "integer", "minimum": 0},
                **ladder_properties,
                "incumbent": {"type": "string", "description": "The incumbent arm: `rules` or `tree:<version>`."},
                "challenger": {"type": ["string", "null"], "description": "The challenger arm, if any."},
                "previous": {
                    "type": ["string", "null"],
                    "description": "The arm a promotion replaced (served as holdout; a rollback returns to it).",
                },
                "seen": {"type": "integer", "minimum": 0, "description": "Joined events the ladder learned from."},
                "state_version": {"type": "integer", "minimum": 0, "description": "Bumped by every transition."},
                "rev": {"type": "integer", "minimum": 0, "description": "Bumped by every save of the state."},
                "cursor": {
                    "type": ["string", "null"],
                    "description": "Joined-stream id the learner had learned up to at the last save.",
                },
                "config_version": {"type": "string"},
                "error": {"type": "string", "description": "Present when the saved state cannot be read."},
            },
        },
        "AdminSlotsResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["store", "config_version", "slots"],
            "properties": {
                "store": {"type": "string"},
                "config_version": {"type": "string"},
                "slots": {"type": "array", "items": _ref("AdminSlotStatus")},
            },
        },
        "Transition": {
            "type": "object",
            "description": "One history entry: what changed, when (`at`, seconds since the epoch), why and by whom "
            "(`actor` is `admin` for the admin API); gate and guardrail details when they decided.",
            "required": ["at", "slot", "transition", "stage", "reason"],
            "properties": {
                "at": {"type": "number"},
                "slot": _ref("SlotName"),
                "transition": {
                    "type": "string",
                    "description": "`trained`, `train_skipped`, `no_change`, `gate_wait`, `rejected`, "
                    "`awaiting_approval`, `ramp`, `promoted`, `rollback`, `fallback`, `freeze` or `unfreeze`.",
                },
                "stage": {"type": "string", "enum": list(_STAGES), "description": "The stage after it."},
                "reason": {"type": "string"},
                "actor": {"type": "string"},
                "note": {"type": "string", "description": "The operator's `reason`, for an admin action."},
            },
        },
        "AdminSlotDetail": {
            "allOf": [{"$ref": "#/components/schemas/AdminSlotStatus"}],
            "type": "object",
            "required": ["state", "history"],
            "properties": {
                "state": {
                    "type": ["object", "null"],
                    "description": "The saved ladder state without its history (null when none is saved): arms "
                    "with their snapshots, counters, last gate.",
                },
                "history": {
                    "type": "array",
                    "items": _ref("Transition"),
                    "description": "The slot's transitions, newest first (the last 100).",
                },
            },
            "unevaluatedProperties": False,
        },
        "AdminActionRequest": {
            "type": "object",
            "additionalProperties": False,
            "description": "Optional body of an admin action.",
            "properties": {"reason": {"type": "string", "maxLength": 500, "description": "Kept in the history."}},
        },
        "AdminActionResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slot", "action", "transition", "status"],
            "properties": {
                "slot": _ref("SlotName"),
                "action": {"type": "string", "enum": ["promote", "rollback", "freeze", "unfreeze"]},
                "transition": _ref("Transition"),
                "status": _ref("AdminSlotStatus"),
            },
        },
        "Health": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "checks": {
                    "type": "object",
                    "required": ["config", "storage"],
                    "additionalProperties": {
                        "type": "object",
                        "required": ["ok"],
                        "properties": {
                            "ok": {"type": "boolean"},
                            "version": {"type": "string"},
                            "error": {"type": "string"},
                        },
                    },
                },
            },
        },
    }

    admin_paths = _admin_paths(slot_names)

    rank_op = {
        "operationId": "rank",
        "tags": ["store"],
        "summary": "Fill the page's slots for one shopper",
        "description": "Fills the requested slots (all by default) in page order: for each slot, the eligible "
        "candidates (the catalog or `candidates`, minus the config's and the request's exclusions, items earlier "
        "slots took, pinned items and publishers at their cap) are scored by the slot's policy and one item is "
        "drawn; its probability is returned as `propensity`. Every decision is logged with the context (defaults "
        "filled in), the full probability vector and the versions, under the returned `event_id`, for "
        f"{_num(reward.window_seconds)} s of rewards. When Redis is down the page is still served by the rules "
        "tier, with `logged: false`.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _ref("RankRequest"),
                    "examples": {name: {"value": value} for name, value in rank_examples.items()},
                }
            },
        },
        "responses": {
            "200": _json(_ref("RankResponse"), "The filled page.", {"page": rank_response_example}),
            "400": _error(
                400, _RANK_400, ("unknown_slot", "slots[0]", f"unknown slot 'footer'; slots: {', '.join(slot_names)}")
            ),
            "413": _error(413, ("body_too_large",), ("body_too_large", "body", too_large)),
            "500": _error(500, ("internal",), ("internal", None, "internal error; the service log has the details")),
        },
    }
    reward_op = {
        "operationId": "reward",
        "tags": ["store"],
        "summary": "Post a shopper event or an explicit reward for one slot of a ranked page",
        "description": reward_rule
        + " Rewards are accepted while the event's window is open and only for slots the event filled. "
        "A retried post never counts twice.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _ref("RewardRequest"),
                    "examples": {name: {"value": value} for name, value in reward_examples.items()},
                }
            },
        },
        "responses": {
            "202": _json(
                _ref("RewardResponse"),
                "Accepted, or a duplicate of an event type already recorded (ignored; safe to retry).",
                {
                    "accepted": {"status": "accepted"},
                    "duplicate": {
                        "status": "duplicate",
                        "note": f"'{click}' was already recorded for this slot; the first one counts",
                    },
                },
            ),
            "400": _error(
                400,
                _REWARD_400,
                ("missing_field", "event", "send exactly one of 'event' (e.g. click) or 'reward' (a number)"),
            ),
            "404": _error(
                404,
                ("unknown_event", "unknown_decision"),
                ("unknown_event", "event_id", "no such event (never logged, or expired)"),
            ),
            "410": _error(
                410,
                ("reward_window_closed",),
                ("reward_window_closed", "event_id", "the reward window of this event closed"),
            ),
            "413": _error(413, ("body_too_large",), ("body_too_large", "body", too_large)),
            "500": _error(500, ("internal",), ("internal", None, "internal error; the service log has the details")),
            "503": _error(
                503,
                ("storage_unavailable",),
                ("storage_unavailable", None, "rewards cannot be stored right now; retry later"),
            ),
        },
    }

    def get(operation_id: str, summary: str, ok: dict[str, Any], tag: str, **more: Any) -> dict[str, Any]:
        return {
            "get": {"operationId": operation_id, "tags": [tag], "summary": summary, "responses": {"200": ok, **more}}
        }

    paths = {
        "/v1/rank": {"post": rank_op},
        "/v1/reward": {"post": reward_op},
        "/v1/slots": get(
            "slots",
            "Each slot's live tier, escalation stage, config version and counters",
            _json(
                _ref("SlotsResponse"),
                "The slots in page order; counts are zero with `counts_available: false` when Redis is unreachable.",
            ),
            "store",
        ),
        **admin_paths,
        "/healthz": get("healthz", "Liveness: the process answers", _json(_ref("Health"), "Up."), "ops"),
        "/readyz": get(
            "readyz",
            "Readiness: config loaded and Redis reachable",
            _json(_ref("Readiness"), "Ready."),
            "ops",
            **{"503": _json(_ref("Readiness"), "Not ready: `checks.storage.ok` is false (Redis unreachable).")},
        ),
        "/metrics": get(
            "metrics",
            "Prometheus metrics",
            {
                "description": "The Prometheus text exposition format (merged across workers under gunicorn).",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "ops",
        ),
        "/openapi.json": get(
            "openapi",
            "This document",
            _json(
                {"type": "object", "required": ["openapi", "info", "paths"]},
                "The OpenAPI 3.1 document of the store currently configured.",
            ),
            "ops",
        ),
    }

    description = (
        f"The API of the storefront bandit serving store `{config.name}`, config version `{config.version}`. "
        "This document is generated from the config in force: context fields, slots, items and event types are "
        "the configured ones, and it changes when the config is reloaded.\n\n"
        'Errors are always JSON, `{"error": {"code", "message", "field"}}`, with a stable `code`. Besides '
        "the statuses listed per operation, any path answers 404 `not_found` when there is no such endpoint and "
        "405 `method_not_allowed` (with an `Allow` header) for a method an endpoint does not take. Request bodies "
        f"are limited to {max_body} bytes (413 `body_too_large`).\n\n"
        "Reward rule: " + reward_rule
    )
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": f"storefront bandit — {config.name}",
            "version": API_VERSION,
            "description": description,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "x-config-version": config.version,
        "tags": [
            {"name": "store", "description": "Called by the web store."},
            {"name": "ops", "description": "Probes, metrics and this document."},
            {"name": "admin", "description": "Escalation status and operator actions (bearer token)."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token of `$STOREFRONT_ADMIN_TOKEN`.",
                }
            },
        },
    }


def _admin_paths(slot_names: list[str]) -> dict[str, Any]:
    """The admin endpoints: status, history, and one POST per operator action."""
    slot_param = {"name": "slot", "in": "path", "required": True, "schema": _ref("SlotName")}
    internal = _error(500, ("internal",), ("internal", None, "internal error; the service log has the details"))
    unauthorized = _error(401, ("unauthorized",), ("unauthorized", None, "missing or wrong admin token"))
    unavailable = _error(
        503, ("storage_unavailable",), ("storage_unavailable", None, "ladder states cannot be read right now; retry")
    )
    disabled = ("admin_disabled", None, "the admin API is disabled: set STOREFRONT_ADMIN_TOKEN")
    common = {"401": unauthorized, "500": internal, "503": unavailable}

    def op(method: str, operation_id: str, summary: str, description: str, ok: dict[str, Any], with_slot: bool,
           **more: Any) -> dict[str, Any]:  # fmt: skip
        codes = ("admin_disabled", "unknown_slot") if with_slot else ("admin_disabled",)
        operation: dict[str, Any] = {
            "operationId": operation_id, "tags": ["admin"], "summary": summary, "description": description,
            "security": [{"bearer": []}],
            "responses": {"200": ok, **common, "404": _error(404, codes, disabled), **more},
        }  # fmt: skip
        if with_slot:
            operation["parameters"] = [slot_param]
        return {method: operation}

    paths = {
        "/v1/admin/slots": op(
            "get", "adminSlots", "Every slot's escalation status",
            "Read from Redis at the call (not a worker's cached view).",
            _json(_ref("AdminSlotsResponse"), "The slots in page order."), False,
        ),
        "/v1/admin/slots/{slot}": op(
            "get", "adminSlot", "One slot's status, state and history",
            "The saved state (without its history) and the slot's transitions, newest first.",
            _json(_ref("AdminSlotDetail"), "The slot."), True,
        ),
    }  # fmt: skip
    actions = {
        "promote": "From shadow or approval: start the ramp. During a ramp: promote the challenger at once.",
        "rollback": "From a ramp: back to the incumbent. After a promotion: back to the previous tier. On a learned "
        "incumbent: back to rules.",
        "freeze": "Stop automatic transitions (training, gate, ramp steps, guardrail); the slot keeps serving as is.",
        "unfreeze": "Resume automatic transitions.",
    }
    body = {"required": False, "content": {"application/json": {"schema": _ref("AdminActionRequest")}}}
    for action, description in actions.items():
        conflicts = ("invalid_transition", "concurrent_update")
        paths[f"/v1/admin/slots/{{slot}}/{action}"] = op(
            "post", f"admin{action.capitalize()}", f"{action.capitalize()} a slot",
            description + " Saved compare-and-set, logged, counted and added to the history; every worker serves "
            "the new state within a second.",
            _json(_ref("AdminActionResponse"), "Applied."), True,
            **{
                "400": _error(400, ("invalid_json", "invalid_type", "unknown_field", "invalid_value"),
                              ("unknown_field", "note", "unknown field; allowed: reason")),
                "409": _error(409, conflicts, ("invalid_transition", None,
                                               "nothing to promote: stage is 'incumbent' with no challenger")),
            },
        )  # fmt: skip
        paths[f"/v1/admin/slots/{{slot}}/{action}"]["post"]["requestBody"] = body
    assert slot_names  # the slot enum comes from SlotName
    return paths
