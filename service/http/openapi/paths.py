"""The store API: the paths the web store calls, ``/v1/rank``, ``/v1/reward`` and ``/v1/slots``.

Each operation lists every status it can answer with the error codes it can
carry, and its request examples (:mod:`service.http.openapi.examples`) are
valid requests for the config.  The reward operation states the configured
reward rule; the rank operation the reward window.
"""

from __future__ import annotations

from typing import Any

from bandit.config import StoreConfig
from service.http.openapi.blocks import get_operation, json_body, num, ref
from service.http.openapi.errors import body_too_large, error_response, internal_error, unauthorized
from service.http.openapi.examples import click_event, rank_examples, rank_response_example, reward_examples
from service.http.openapi.reward_rule import reward_rule

#: The codes ``/v1/rank`` answers 400 with.
RANK_400 = (
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
#: The codes ``/v1/reward`` answers 400 with.
REWARD_400 = (
    "invalid_json",
    "invalid_type",
    "unknown_field",
    "missing_field",
    "invalid_value",
    "unknown_slot",
    "unknown_event_type",
)


def store_paths(config: StoreConfig) -> dict[str, Any]:
    """The store path items, by path, each with the keys it takes (:func:`access`)."""
    slots = get_operation(
        "slots",
        "Each slot's live tier, escalation stage, config version and counters",
        json_body(
            ref("SlotsResponse"),
            "The slots in page order; counts are zero with `counts_available: false` when Redis is unreachable.",
        ),
        "store",
    )
    return {
        "/v1/rank": {"post": with_access(rank_operation(config), config, "rank", ("backend", "browser"))},
        "/v1/reward": {"post": with_access(reward_operation(config), config, "reward", ("backend", "browser"))},
        "/v1/slots": {"get": with_access(slots["get"], config, "slots", ("backend",))},
    }


def with_access(operation: dict[str, Any], config: StoreConfig, action: str, roles: tuple[str, ...]) -> dict[str, Any]:
    """``operation`` with its ``security`` (the key schemes; none needed when the config leaves it open) and the
    401, 403 and 429 responses it can answer with."""
    schemes: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    if "browser" in roles:
        schemes.append({"browserKey": []})
    is_open = config.service.access.get(action) == "open"
    if is_open:
        schemes.append({})
    forbidden: tuple[str, str | None, str] = ("forbidden", None, f"key 'store-pages' (browser) may not call {action}")
    if action == "reward":
        forbidden = "forbidden", "revenue", "key 'store-pages' is a browser key: it posts events without revenue"
    needs = "open: a key is optional" if is_open else "needs an API key"
    return {
        **operation,
        "description": f"{operation.get('description', operation['summary'])} **Access** ({action} in "
        f"`service.access`): {needs}; keys of role {', '.join(roles)} or admin.",
        "security": schemes,
        "responses": {
            **operation["responses"],
            "401": unauthorized(),
            **({"403": error_response(403, ("forbidden",), forbidden)} if action != "rank" else {}),
            "429": {
                **error_response(
                    429,
                    ("rate_limited",),
                    (
                        "rate_limited",
                        None,
                        "key 'store-pages' is over its limit of 20/s per client address; retry in 1 s",
                    ),
                ),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds until the key's window ends.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                },
            },
        },
    }


def rank_operation(config: StoreConfig) -> dict[str, Any]:
    """``POST /v1/rank``: fill the page's slots for one shopper."""
    return {
        "operationId": "rank",
        "tags": ["store"],
        "summary": "Fill the page's slots for one shopper",
        "description": "Fills the requested slots (all by default) in page order: for each slot, the eligible "
        "candidates (the catalog or `candidates`, minus the config's and the request's exclusions, items earlier "
        "slots took, pinned items and publishers at their cap) are scored by the slot's policy and one item is "
        "drawn; its probability is returned as `propensity`. Every decision is logged with the context (defaults "
        "filled in), the full probability vector and the versions, under the returned `event_id`, for "
        f"{num(config.reward.window_seconds)} s of rewards. When Redis is down the page is still served by the rules "
        "tier, with `logged: false`.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ref("RankRequest"),
                    "examples": {name: {"value": value} for name, value in rank_examples(config).items()},
                }
            },
        },
        "responses": {
            "200": json_body(ref("RankResponse"), "The filled page.", {"page": rank_response_example(config)}),
            "400": error_response(
                400,
                RANK_400,
                ("unknown_slot", "slots[0]", f"unknown slot 'footer'; slots: {', '.join(config.slot_names)}"),
            ),
            "413": body_too_large(config.service.max_body_bytes),
            "500": internal_error(),
        },
    }


def reward_operation(config: StoreConfig) -> dict[str, Any]:
    """``POST /v1/reward``: post a shopper event or an explicit reward for one slot decision."""
    return {
        "operationId": "reward",
        "tags": ["store"],
        "summary": "Post a shopper event or an explicit reward for one slot of a ranked page",
        "description": reward_rule(config)
        + " Rewards are accepted while the event's window is open and only for slots the event filled. "
        "A retried post never counts twice.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ref("RewardRequest"),
                    "examples": {name: {"value": value} for name, value in reward_examples(config).items()},
                }
            },
        },
        "responses": {
            "202": json_body(
                ref("RewardResponse"),
                "Accepted, queued (recorded as soon as its page or storage is there), or a duplicate of an event "
                "type already recorded (ignored; safe to retry).",
                {
                    "accepted": {"status": "accepted"},
                    "queued": {"status": "queued", "note": "recorded when its page reaches storage"},
                    "duplicate": {
                        "status": "duplicate",
                        "note": f"'{click_event(config)}' was already recorded for this slot; the first one counts",
                    },
                },
            ),
            "400": error_response(
                400,
                REWARD_400,
                ("missing_field", "event", "send exactly one of 'event' (e.g. click) or 'reward' (a number)"),
            ),
            "404": error_response(
                404,
                ("unknown_event", "unknown_decision"),
                ("unknown_event", "event_id", "no such event (never logged, or expired)"),
            ),
            "410": error_response(
                410,
                ("reward_window_closed",),
                ("reward_window_closed", "event_id", "the reward window of this event closed"),
            ),
            "413": body_too_large(config.service.max_body_bytes),
            "500": internal_error(),
            "503": error_response(
                503,
                ("storage_unavailable",),
                ("storage_unavailable", None, "rewards cannot be stored right now; retry later"),
            ),
        },
    }
