"""The examples of the store endpoints, each one valid for the config it is built from.

Every request example is a request the service accepts for *this* config:
``tests/service/http/test_openapi.py`` sends each one to the app and checks the answer
against the documented schema.  Context values come from
:func:`~service.http.openapi.context.example_value`; where a real event id
from ``/v1/rank`` goes, the examples use :data:`EXAMPLE_EVENT_ID`.
"""

from __future__ import annotations

from typing import Any

from bandit.config import StoreConfig
from service.http.openapi.context import example_value

# An id of the documented shape; examples use it where a real id from /v1/rank goes.
EXAMPLE_EVENT_ID = "0190a4f3c2b7e1d2c3b4a5f6e7d9f0c2a7b1e6d3c84"


def rank_examples(config: StoreConfig) -> dict[str, Any]:
    """``POST /v1/rank`` bodies: the whole page, required context only, some slots, candidates and exclude."""
    slot_names = list(config.slot_names)
    item_ids = list(config.catalog.ids)
    fields = config.context.fields
    limit = config.service.max_candidates
    context_example = {f.name: example_value(f) for f in fields}
    required_example = {f.name: example_value(f) for f in fields if f.required}
    return {
        "whole_page": {"context": context_example},
        "required_context_only": {"context": required_example},
        "some_slots": {"context": required_example, "slots": list(reversed(slot_names[-2:]))},
        "candidates_and_exclude": {
            "context": required_example,
            "candidates": item_ids[: min(len(item_ids), 8, limit)],
            "exclude": item_ids[1:2],
        },
    }


def rank_response_example(config: StoreConfig) -> dict[str, Any]:
    """A ``/v1/rank`` answer: every slot filled with its default item by the rules tier."""
    default_items = {slot.name: slot.default[0] for slot in config.slots}
    return {
        "event_id": EXAMPLE_EVENT_ID,
        "config_version": config.version,
        "logged": True,
        "slots": [
            {"slot": name, "item": default_items[name], "propensity": 0.9, "tier": "rules", "explanation": "default"}
            for name in config.slot_names
        ],
    }


def click_event(config: StoreConfig) -> str:
    """The event type the examples post: ``click`` when configured, else the first event type."""
    event_types = list(config.reward.events)
    return "click" if "click" in event_types else event_types[0]


def reward_examples(config: StoreConfig) -> dict[str, Any]:
    """``POST /v1/reward`` bodies: an event, a purchase with revenue (when configured) and an explicit reward."""
    first_slot = config.slot_names[0]
    examples: dict[str, Any] = {
        "event": {"event_id": EXAMPLE_EVENT_ID, "slot": first_slot, "event": click_event(config)}
    }
    if "purchase" in config.reward.events:
        examples["purchase_with_revenue"] = {
            "event_id": EXAMPLE_EVENT_ID,
            "slot": first_slot,
            "event": "purchase",
            "revenue": 29.99,
        }
    examples["explicit_reward"] = {"event_id": EXAMPLE_EVENT_ID, "slot": first_slot, "reward": 0.5}
    return examples
