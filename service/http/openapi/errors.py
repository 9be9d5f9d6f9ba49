"""Errors: the one table of error codes, the statuses they are answered with, and error responses.

:data:`ERROR_CODES` lists every error code the service answers with, its HTTP
status and its meaning; :func:`statuses` says every status a code can come
with.  :func:`error_response` documents one status of an operation with the
codes it can carry, and :func:`error_schema` is the ``Error`` component every
error body follows, whatever the endpoint or status: never an HTML page.
"""

from __future__ import annotations

from typing import Any

from service.http.openapi.blocks import json_body, ref

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
        "The admin API is off: no admin key is configured. Add an `admin` line to `STOREFRONT_API_KEYS_FILE` (or set "
        "`STOREFRONT_ADMIN_TOKEN`) and send it as `Authorization: Bearer <key>`.",
    ),
    "unauthorized": (
        401,
        "The endpoint needs an API key and none came, or an unknown one, or a server (backend or admin) key came in "
        "the URL (`?key=` is for browser keys only; rotate that key).",
    ),
    "forbidden": (
        403,
        "The key's role may not do this: a browser key on `/v1/slots` or the admin API, or posting `revenue` or an "
        "explicit `reward` (those come from the store's servers, with a backend key).",
    ),
    "rate_limited": (
        429,
        "The key is over its `limit` (or over its `ip_limit` from this client address); `Retry-After` says in how "
        "many seconds its window ends.",
    ),
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


def error_response(status: int, codes: tuple[str, ...], example: tuple[str, str | None, str]) -> dict[str, Any]:
    """An error response whose ``code`` is one of ``codes`` (all answered with ``status``).

    ``example`` is ``(code, field, message)`` of a typical instance.
    """
    assert all(status in statuses(c) for c in codes), codes
    lines = "\n".join(f"- `{c}`: {ERROR_CODES[c][1]}" for c in codes)
    schema = {
        "allOf": [ref("Error")],
        "properties": {"error": {"properties": {"code": {"enum": list(codes)}}}},
    }
    code, field, message = example
    return json_body(
        schema, f"Error codes:\n{lines}", {code: {"error": {"code": code, "message": message, "field": field}}}
    )


def unauthorized() -> dict[str, Any]:
    """The 401 ``unauthorized`` response of every operation that takes a key."""
    return error_response(401, ("unauthorized",), ("unauthorized", None, "unknown API key"))


def body_too_large(max_body_bytes: int) -> dict[str, Any]:
    """The 413 response of a body larger than ``service.max_body_bytes``."""
    too_large = f"request body is larger than the limit of {max_body_bytes} bytes"
    return error_response(413, ("body_too_large",), ("body_too_large", "body", too_large))


def internal_error() -> dict[str, Any]:
    """The 500 ``internal`` response every operation can answer with."""
    return error_response(500, ("internal",), ("internal", None, "internal error; the service log has the details"))


def error_schema() -> dict[str, Any]:
    """The ``Error`` component: the body of every error."""
    return {
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
    }
