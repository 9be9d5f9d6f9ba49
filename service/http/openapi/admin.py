"""The admin API: each slot's escalation status and history, and one POST per operator action.

``/v1/admin/slots`` and ``/v1/admin/slots/{slot}`` read the ladder states;
``promote``, ``rollback``, ``freeze`` and ``unfreeze`` change one.  Every admin
operation needs an admin key as a bearer token (tag ``admin``) and answers
404 ``admin_disabled`` when no admin key is configured.  The schemas of their bodies
and answers (``AdminSlotStatus``, ``Transition``...) are here too.
"""

from __future__ import annotations

from typing import Any

from bandit.escalation.state import STAGES, TRANSITIONS
from service.http.openapi.blocks import json_body, ref
from service.http.openapi.errors import error_response, internal_error, unauthorized
from service.http.openapi.schemas import LADDER_FIELDS, ladder_properties


def admin_schemas() -> dict[str, Any]:
    """The components of the admin endpoints, by name."""
    return {
        # The fields of a slot's status, without a closing rule, so that AdminSlotDetail can add its own to them.
        "AdminSlotStatus": {"allOf": [ref("AdminSlotFields")], "unevaluatedProperties": False},
        "AdminSlotFields": {
            "type": "object",
            "required": [
                "slot",
                "position",
                "learner",
                *LADDER_FIELDS,
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
                "slot": ref("SlotName"),
                "position": {"type": "integer", "minimum": 0},
                "learner": {
                    "type": ["string", "null"],
                    "description": "The learner running this slot's ladder (the holder of its lease: host:pid:id); "
                    "null when none does (escalation off, or every learner stopped).",
                },
                **ladder_properties(),
                "incumbent": {"type": "string", "description": "The incumbent arm: `rules` or `tree:<version>`."},
                "challenger": {"type": ["string", "null"], "description": "The challenger arm, if any."},
                "previous": {
                    "type": ["string", "null"],
                    "description": "The holdout after a promotion: the arm the promotion replaced, or, under a "
                    "gradient incumbent, the tree retrained in its place (a rollback returns to it).",
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
                "slots": {"type": "array", "items": ref("AdminSlotStatus")},
            },
        },
        "Transition": {
            "type": "object",
            "description": "One history entry: what changed, when (`at`, seconds since the epoch), why and by whom "
            "(`actor` is `admin` for the admin API); gate and guardrail details when they decided.",
            "required": ["at", "slot", "transition", "stage", "reason"],
            "properties": {
                "at": {"type": "number"},
                "slot": ref("SlotName"),
                "transition": {
                    "type": "string",
                    "enum": list(TRANSITIONS),
                    "description": "What happened (docs/ladder.md, the stages and their transitions).",
                },
                "stage": {"type": "string", "enum": list(STAGES), "description": "The stage after it."},
                "reason": {"type": "string"},
                "actor": {"type": "string"},
                "note": {"type": "string", "description": "The operator's `reason`, for an admin action."},
            },
        },
        "AdminSlotDetail": {
            "allOf": [ref("AdminSlotFields")],
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
                    "items": ref("Transition"),
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
                "slot": ref("SlotName"),
                "action": {"type": "string", "enum": ["promote", "rollback", "freeze", "unfreeze"]},
                "transition": ref("Transition"),
                "status": ref("AdminSlotStatus"),
            },
        },
    }


def admin_paths(slot_names: list[str]) -> dict[str, Any]:
    """The admin endpoints: status, history, and one POST per operator action."""
    slot_param = {"name": "slot", "in": "path", "required": True, "schema": ref("SlotName")}
    internal = internal_error()
    refused = unauthorized()
    forbidden = error_response(403, ("forbidden",), ("forbidden", None, "key 'store-backend' (backend) may not call "
                                                      "admin"))  # fmt: skip
    unavailable = error_response(
        503, ("storage_unavailable",), ("storage_unavailable", None, "ladder states cannot be read right now; retry")
    )
    disabled = ("admin_disabled", None, "the admin API is disabled: no admin key is configured")
    common = {"401": refused, "403": forbidden, "500": internal, "503": unavailable}

    def op(method: str, operation_id: str, summary: str, description: str, ok: dict[str, Any], with_slot: bool,
           **more: Any) -> dict[str, Any]:  # fmt: skip
        codes = ("admin_disabled", "unknown_slot") if with_slot else ("admin_disabled",)
        operation: dict[str, Any] = {
            "operationId": operation_id, "tags": ["admin"], "summary": summary, "description": description,
            "security": [{"bearer": []}, {"apiKey": []}],
            "responses": {"200": ok, **common, "404": error_response(404, codes, disabled), **more},
        }  # fmt: skip
        if with_slot:
            operation["parameters"] = [slot_param]
        return {method: operation}

    paths = {
        "/v1/admin/slots": op(
            "get", "adminSlots", "Every slot's escalation status",
            "Read from Redis at the call (not a worker's cached view).",
            json_body(ref("AdminSlotsResponse"), "The slots in page order."), False,
        ),
        "/v1/admin/slots/{slot}": op(
            "get", "adminSlot", "One slot's status, state and history",
            "The saved state (without its history) and the slot's transitions, newest first.",
            json_body(ref("AdminSlotDetail"), "The slot."), True,
        ),
    }  # fmt: skip
    actions = {
        "promote": "From canary, shadow or approval: start the ramp. During a ramp: promote the challenger at once.",
        "rollback": "From a ramp: back to the incumbent. After a promotion: back to the previous tier. On a learned "
        "incumbent: back to rules.",
        "freeze": "Stop automatic transitions (training, gate, ramp steps, guardrail); the slot keeps serving as is.",
        "unfreeze": "Resume automatic transitions.",
    }
    body = {"required": False, "content": {"application/json": {"schema": ref("AdminActionRequest")}}}
    for action, description in actions.items():
        conflicts = ("invalid_transition", "concurrent_update")
        paths[f"/v1/admin/slots/{{slot}}/{action}"] = op(
            "post", f"admin{action.capitalize()}", f"{action.capitalize()} a slot",
            description + " Saved compare-and-set, logged, counted and added to the history; every worker serves "
            "the new state within a second.",
            json_body(ref("AdminActionResponse"), "Applied."), True,
            **{
                "400": error_response(400, ("invalid_json", "invalid_type", "unknown_field", "invalid_value"),
                              ("unknown_field", "note", "unknown field; allowed: reason")),
                "409": error_response(409, conflicts, ("invalid_transition", None,
                                               "nothing to promote: stage is 'incumbent' with no challenger")),
            },
        )  # fmt: skip
        paths[f"/v1/admin/slots/{{slot}}/{action}"]["post"]["requestBody"] = body
    assert slot_names  # the slot enum comes from SlotName
    return paths
