"""The store API's component schemas: the context built from the config, what rank, reward and slots take and answer.

``SlotName``, ``ItemId`` and the event types are enums of the configured
slots, items and event types; ``Context`` has one property per configured
context field (:mod:`service.http.openapi.context`).  The request and
response schemas of ``/v1/rank``, ``/v1/reward`` and ``/v1/slots`` follow, and
:func:`ladder_properties`, the escalation status of a slot that ``/v1/slots``
and the admin API both report; the ``tier`` a response can say comes from the
tier registry (:func:`bandit.tiers.served`).  Schemas are JSON Schema 2020-12.
"""

from __future__ import annotations

from typing import Any

from bandit import tiers
from bandit.config import StoreConfig
from bandit.escalation.state import STAGES
from service.http.openapi.blocks import ref
from service.http.openapi.context import context_property
from service.http.openapi.examples import EXAMPLE_EVENT_ID
from service.http.openapi.reward_rule import reward_rule

#: The escalation status fields of a slot, in ``/v1/slots`` and the admin API alike.
LADDER_FIELDS = ("tier", "mode", "stage", "share", "holdout", "incumbent_version", "challenger_version",
                 "canary_version", "frozen", "last_gate")  # fmt: skip


def ladder_properties() -> dict[str, Any]:
    """The schemas of :data:`LADDER_FIELDS`: the slot's tier, mode, stage, share, versions, freeze and last gate."""
    return {
        "tier": {
            "type": "string",
            "description": "The tier serving the slot: its ladder's incumbent (`rules`, `tree`), else the configured "
            "tier.",
        },
        "mode": {"type": "string", "enum": ["auto", "manual", "off"], "description": "The slot's escalation mode."},
        "stage": {
            "type": "string",
            "enum": list(STAGES),
            "description": "Escalation stage: `incumbent` (no challenger), `canary` (a gradient challenger serves "
            "`share` of the traffic and follows its learner), `shadow` (challenger logged beside every decision, "
            "served only as a gradient canary; a tree challenger may have the gradient's canary beside it, see "
            "`canary_version`), `approval` (gate passed, waiting for an operator), `ramp`, "
            "`promoted`.",
        },
        "share": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Traffic share of the secondary arm: a gradient canary, the challenger during a ramp, the "
            "previous tier as holdout after a promotion; 0 otherwise.",
        },
        "holdout": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Traffic share of the previous tier, kept as a live control after a promotion (also "
            "while a later challenger is in canary or shadow); 0 otherwise.",
        },
        "incumbent_version": {"type": ["string", "null"], "description": "Snapshot version of the incumbent model."},
        "challenger_version": {"type": ["string", "null"], "description": "Snapshot version of the challenger."},
        "canary_version": {
            "type": ["string", "null"],
            "description": "Snapshot version of the gradient canary learning beside a tree challenger (the first "
            "climb: it serves `share` of the traffic while the tree is in shadow, pauses during the tree's ramp, "
            "then becomes the next challenger); null otherwise.",
        },
        "frozen": {"type": "boolean", "description": "An operator froze the slot: no automatic transition."},
        "last_gate": {
            "type": ["object", "null"],
            "description": "The last gate result: `passed`, `reason`, the estimator, `n`, the values and the lift "
            "with its confidence bounds (absolute, and relative to the incumbent's value), the interval's "
            "`confidence`, and which `look` of how many `looks` it was.",
        },
    }


def store_schemas(config: StoreConfig) -> dict[str, Any]:
    """The components of the store endpoints, by name, for ``config``."""
    slot_names = list(config.slot_names)
    item_ids = list(config.catalog.ids)
    event_types = list(config.reward.events)
    fields = config.context.fields
    required = [f.name for f in fields if f.required]
    limit = config.service.max_candidates
    return {
        "SlotName": {"type": "string", "enum": slot_names, "description": "A slot of the page, from the config."},
        "ItemId": {"type": "string", "enum": item_ids, "description": "An item of the catalog, from the config."},
        "EventId": {
            "type": "string",
            "description": "Opaque id of one ranked page, as `/v1/rank` returned it. It carries the time it was "
            "issued and a signature (a made-up or altered id is answered 404 `unknown_event`): store and send it "
            "back as a string, never parse it.",
            "examples": [EXAMPLE_EVENT_ID],
        },
        "Context": {
            "type": "object",
            "description": "The shopper context, as declared under `context:` in the config. Unknown fields are "
            "refused; fields left out get their default (the filled-in context is what gets logged).",
            "additionalProperties": False,
            "required": required,
            "properties": {f.name: context_property(f) for f in fields},
        },
        "ItemList": {
            "type": ["array", "null"],
            "items": ref("ItemId"),
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
                "context": ref("Context"),
                "slots": {
                    "type": ["array", "null"],
                    "items": ref("SlotName"),
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "The slots to fill; all slots of the page when left out (or null). They are "
                    "filled, and returned, in page order whatever the order here.",
                },
                "candidates": {
                    "allOf": [ref("ItemList")],
                    "description": "Restrict every slot to these items (e.g. what is in stock). The whole catalog "
                    "when left out. An empty list leaves every slot empty.",
                },
                "exclude": {
                    "allOf": [ref("ItemList")],
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
                "slot": ref("SlotName"),
                "item": ref("ItemId"),
                "propensity": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "The probability the serving policy gave this item (1 for a pinned item).",
                },
                "tier": {
                    "type": "string",
                    "enum": list(tiers.served()),
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
                "slot": ref("SlotName"),
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
                "event_id": ref("EventId"),
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
                    "items": {"oneOf": [ref("FilledSlot"), ref("UnfilledSlot")]},
                },
            },
        },
        "RewardEvent": {
            "type": "object",
            "title": "A shopper event",
            "additionalProperties": False,
            "required": ["event_id", "slot", "event"],
            "properties": {
                "event_id": ref("EventId"),
                "slot": ref("SlotName"),
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
                "event_id": ref("EventId"),
                "slot": ref("SlotName"),
                "reward": {"type": "number", "description": "A finite number; the last one posted counts."},
            },
        },
        "RewardRequest": {
            "description": "Exactly one of `event` and `reward`. " + reward_rule(config),
            "oneOf": [ref("RewardEvent"), ref("RewardValue")],
        },
        "RewardResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status"],
            "properties": {
                "status": {
                    "type": "string",
                    "enum": ["accepted", "duplicate", "queued"],
                    "description": "`accepted`: recorded. `duplicate`: this event type was already recorded for "
                    "this slot; the first one counts and this one is ignored. `queued`: kept by the server and "
                    "recorded as soon as it can be — its page is still on its way to storage (the moment after "
                    "the rank), or storage is away and the reward was spooled; do not retry.",
                },
                "note": {"type": "string", "description": "Present with `duplicate` and `queued`, for people."},
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
                "slots": {"type": "array", "items": ref("SlotStatus")},
            },
        },
        "SlotStatus": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slot", "position", *LADDER_FIELDS, "exploration", "config_version", "counts"],
            "properties": {
                "slot": ref("SlotName"),
                "position": {"type": "integer", "minimum": 0, "description": "Page order; 0 is filled first."},
                **ladder_properties(),
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
    }
