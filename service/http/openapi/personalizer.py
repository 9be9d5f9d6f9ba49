"""The Personalizer-compatible paths (:mod:`service.http.personalizer`), each with and without a version segment."""

from __future__ import annotations

from typing import Any

from bandit.config import StoreConfig
from service.http.openapi.blocks import json_body
from service.http.openapi.errors import body_too_large, error_response, internal_error, unauthorized

_VERSIONS = ["v1.0", "v1.1-preview.1", "v1.1-preview.2", "v1.1-preview.3"]
_RANK_400 = ("invalid_json", "invalid_type", "unknown_field", "missing_field", "invalid_value", "unknown_item",
             "duplicate_item", "too_many_items")  # fmt: skip
_OBJECT: dict[str, Any] = {"type": "object"}


def _features() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object"}, "description": "Objects of features; nested objects are "
            "flattened with `.`; features that name no declared context field are ignored."}  # fmt: skip


def _actions() -> dict[str, Any]:
    return {
        "type": "array", "minItems": 1,
        "items": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "A catalog item id, or any "
                   "other id: an ad-hoc action ranked with this request's features (logged with them, not learned "
                   "from). The first action of a single-slot rank is the client's baseline."},
            "features": {"type": "array", "items": {"type": "object"}, "description": "A catalog item's are not "
                         "used (the catalog's are). An ad-hoc action's are flattened like contextFeatures onto the "
                         "declared catalog features (and validated as they declare); `publisher` names its "
                         "publisher; the others are ignored and named in X-Storefront-Ignored-Features."},
        }},
    }  # fmt: skip


def _body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}


def _errors(config: StoreConfig, codes_400: tuple[str, ...], more: dict[str, Any]) -> dict[str, Any]:
    return {
        "400": error_response(400, codes_400, (codes_400[-1], None, "see the field")),
        "401": unauthorized(),
        "413": body_too_large(config.service.max_body_bytes),
        "429": error_response(429, ("rate_limited",), ("rate_limited", None, "over the key's limit")),
        "500": internal_error(),
        **more,
    }


def _no_content(text: str) -> dict[str, Any]:
    return {"description": text}


def personalizer_paths(config: StoreConfig) -> dict[str, Any]:
    """The Personalizer REST surface as ``azure-ai-personalizer`` calls it; keys in ``Ocp-Apim-Subscription-Key``."""
    first = config.slots[0].name
    event_param = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 256}}
    unknown = error_response(404, ("unknown_event", "unknown_decision"), ("unknown_event", "eventId", "no such event"))
    late = error_response(410, ("reward_window_closed",), ("reward_window_closed", "event_id", "window closed"))
    down = error_response(503, ("storage_unavailable",), ("storage_unavailable", None, "retry later"))
    value = {"type": "object", "required": ["value"], "properties": {"value": {"type": "number", "minimum": -1,
                                                                                "maximum": 1}}}  # fmt: skip

    def stored(codes_400: tuple[str, ...]) -> dict[str, Any]:
        """The answers of a reward: stored (204), or why not."""
        forbidden = error_response(403, ("forbidden",), ("forbidden", "value", "browser key"))
        return {"204": _no_content("Stored (or queued)."),
                **_errors(config, codes_400, {"403": forbidden, "404": unknown, "410": late, "503": down})}  # fmt: skip

    ops: dict[str, tuple[str, dict[str, Any]]] = {
        "/rank": ("post", {
            "operationId": "personalizerRank",
            "summary": f"Personalizer single-slot rank: the actions for slot `{first}`",
            "requestBody": _body({"type": "object", "required": ["actions"], "properties": {
                "contextFeatures": _features(), "actions": _actions(),
                "excludedActions": {"type": "array", "items": {"type": "string"}},
                "eventId": {"type": "string", "maxLength": 256}, "deferActivation": {"type": "boolean"},
            }}, "Personalizer's RankRequest."),
            "responses": {"201": json_body({"type": "object", "required": ["eventId", "ranking"], "properties": {
                "eventId": {"type": "string"},
                "ranking": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "probability": {"type": "number"}}}},
                "rewardActionId": {"type": ["string", "null"]},
            }}, "Every action with its probability, the chosen one first."),
                **_errors(config, _RANK_400, {})},
        }),
        "/events/{event_id}/reward": ("post", {
            "operationId": "personalizerReward",
            "summary": f"Personalizer reward (-1 to 1) of slot `{first}`",
            "parameters": [event_param],
            "requestBody": _body(value, "The reward value."),
            "responses": stored(("invalid_json", "missing_field", "invalid_value")),
        }),
        "/events/{event_id}/activate": ("post", {
            "operationId": "personalizerActivate",
            "summary": "Personalizer activation of a deferred event: its decision is learned from",
            "parameters": [event_param],
            "responses": {"204": _no_content("Activated (or nothing to activate)."),
                          **_errors(config, ("invalid_value",), {"404": unknown, "410": late, "503": down})},
        }),
        "/multislot/rank": ("post", {
            "operationId": "personalizerRankMultiSlot",
            "summary": "Personalizer multi-slot rank: slot ids are the config's slot names",
            "requestBody": _body({"type": "object", "required": ["actions", "slots"], "properties": {
                "contextFeatures": _features(), "actions": _actions(),
                "slots": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["id",
                          "baselineAction"], "properties": {
                    "id": {"type": "string", "enum": list(config.slot_names)}, "baselineAction": {"type": "string"},
                    "excludedActions": {"type": "array", "items": {"type": "string"}},
                    "features": {"type": "array", "items": {"type": "object"}}}}},
                "eventId": {"type": "string", "maxLength": 256}, "deferActivation": {"type": "boolean"},
            }}, "Personalizer's MultiSlotRankRequest."),
            "responses": {"201": json_body({"type": "object", "required": ["eventId", "slots"], "properties": {
                "eventId": {"type": "string"},
                "slots": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "rewardActionId": {"type": ["string", "null"]}}}},
            }}, "The chosen action per slot."),
                **_errors(config, (*_RANK_400, "unknown_slot", "duplicate_slot"), {})},
        }),
        "/multislot/events/{event_id}/reward": ("post", {
            "operationId": "personalizerRewardMultiSlot",
            "summary": "Personalizer multi-slot rewards: `{\"reward\": [{\"slotId\", \"value\"}]}`",
            "parameters": [event_param],
            "requestBody": _body({"type": "object", "required": ["reward"], "properties": {"reward": {
                "type": "array", "items": {"type": "object", "required": ["slotId", "value"], "properties": {
                    "slotId": {"type": "string"}, "value": {"type": "number", "minimum": -1, "maximum": 1}}}}}},
                "Rewards per slot."),
            "responses": stored(("invalid_json", "invalid_type", "invalid_value", "missing_field", "unknown_slot")),
        }),
        "/multislot/events/{event_id}/activate": ("post", {
            "operationId": "personalizerActivateMultiSlot",
            "summary": "Personalizer activation of a deferred multi-slot event",
            "parameters": [event_param],
            "responses": {"204": _no_content("Activated (or nothing to activate)."),
                          **_errors(config, ("invalid_value",), {"404": unknown, "410": late, "503": down})},
        }),
        "/configurations/service": ("get", {
            "operationId": "personalizerServiceConfiguration",
            "summary": "Personalizer service configuration, from the store config",
            "responses": {"200": json_body(_OBJECT, "rewardWaitTime, defaultReward, explorationPercentage, "
                                           "learningMode (Apprentice while every slot is on its rules)..."),
                          "401": unauthorized(),
                          "500": internal_error()},
        }),
        "/configurations/policy": ("get", {
            "operationId": "personalizerPolicy",
            "summary": "Personalizer learning policy: the ladder's tiers per slot",
            "responses": {"200": json_body(_OBJECT, "name and arguments."),
                          "401": unauthorized(),
                          "500": internal_error()},
        }),
    }  # fmt: skip
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "enum": _VERSIONS}}
    paths: dict[str, Any] = {}
    for rule, (method, operation) in ops.items():
        operation = {**operation, "tags": ["personalizer"], "security": [{"apiKey": []}, {"bearer": []}]}
        paths[f"/personalizer{rule}"] = {method: operation}
        versioned = {**operation, "operationId": operation["operationId"] + "Versioned",
                     "parameters": [version, *operation.get("parameters", [])]}  # fmt: skip
        paths[f"/personalizer/{{version}}{rule}"] = {method: versioned}
    return paths
