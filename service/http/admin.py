"""The admin API: each slot's escalation status and history, and the operator's promote, rollback and freeze.

Every endpoint needs an admin key (see :mod:`service.http.access`; e.g.
``$STOREFRONT_ADMIN_TOKEN``) as ``Authorization: Bearer <key>``.  Without an
admin key configured the whole API is off: every endpoint answers 404
``admin_disabled``.

An action loads the slot's state from Redis, applies
:meth:`bandit.escalation.ladder.SlotLadder.act` to it (actor ``admin``) and saves it
compare-and-set on the state's revision, so it never overwrites what the
learner saved meanwhile (it re-reads and retries instead).  The save bumps the
ladder version, so every worker serves the new state within a second; this
worker at once.  Like any transition, it is logged, counted and appended to
the slot's history.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, current_app, request

from bandit.config import SlotConfig, StoreConfig
from bandit.escalation.ladder import SlotLadder
from bandit.escalation.state import SlotState, arm_name
from service.audit import announce, publish_stage
from service.http.access import authorise
from service.http.errors import ApiError
from service.http.ladders import slot_status
from service.http.runtime import ConfigHolder, Runtime
from service.storage import STORAGE_ERRORS
from service.storage.protocols import LadderConflict, LadderStore, LadderWrite, LearnerLease, StoredLadder

log = logging.getLogger("storefront")
bp = Blueprint("admin", __name__, url_prefix="/v1/admin")

ACTIONS = ("promote", "rollback", "freeze", "unfreeze")
HISTORY_LIMIT = 100
_MAX_REASON = 500
_JSON = "application/json"


def _holder() -> ConfigHolder:
    holder: ConfigHolder = current_app.extensions["storefront"]
    return holder


def _storage() -> LadderStore:
    storage: LadderStore = current_app.extensions["storefront.storage"]
    return storage


def _json(payload: Any, status: int = 200) -> tuple[Response, int]:
    return Response(json.dumps(payload), mimetype=_JSON), status


@bp.before_request
def _authorise() -> None:
    authorise("admin", {})


def _slot_config(runtime: Runtime, slot: str) -> SlotConfig:
    if slot not in runtime.slot_names:
        names = ", ".join(runtime.config.slot_names)
        raise ApiError(404, "unknown_slot", f"unknown slot {slot!r}; slots: {names}", "slot")
    return runtime.config.slot(slot)


def _load(slots: Sequence[str]) -> dict[str, StoredLadder]:
    try:
        return _storage().load_ladders(slots)
    except STORAGE_ERRORS as exc:
        log.error("admin: ladder states unreadable: %s", exc)
        raise ApiError(503, "storage_unavailable", "ladder states cannot be read right now; retry later") from None


def _learners(slots: Sequence[str]) -> dict[str, str | None]:
    """Which learner runs each slot's ladder: the holder of its lease (or of the lease of every slot), if any."""
    lease: LearnerLease = current_app.extensions["storefront.storage"]
    try:
        every = lease.lease_holder("ladder")
        return {slot: every or lease.lease_holder(f"ladder:{slot}") for slot in slots}
    except STORAGE_ERRORS:
        return dict.fromkeys(slots)


def _state(slot: str, stored: StoredLadder | None) -> SlotState | None:
    if stored is None:
        return None
    if stored.state is None:
        raise ValueError("the saved state is not JSON")
    return SlotState.from_json(stored.state)


def _status(config: StoreConfig, slot: SlotConfig, stored: StoredLadder | None, learner: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"slot": slot.name, "position": slot.position, "learner": learner}
    try:
        state = _state(slot.name, stored)
    except ValueError as exc:
        out.update(slot_status(slot, None))
        out["error"] = f"saved state unreadable: {exc}"
        state = None
    else:
        out.update(slot_status(slot, state))
    out.update({
        "incumbent": arm_name(state.incumbent) if state else slot.tier,
        "challenger": arm_name(state.challenger) if state else None,
        "previous": arm_name(state.previous) if state else None,
        "seen": state.seen if state else 0,
        "state_version": state.version if state else 0,
        "rev": stored.rev if stored else 0,
        "cursor": stored.cursor if stored else None,
        "config_version": config.version,
    })  # fmt: skip
    return out


@bp.get("/slots")
def slots() -> tuple[Response, int]:
    """Every slot's escalation status, read from Redis."""
    config = _holder().current().config
    stored = _load(config.slot_names)
    learners = _learners(config.slot_names)
    statuses = [_status(config, slot, stored.get(slot.name), learners[slot.name]) for slot in config.slots]
    return _json({"store": config.name, "config_version": config.version, "slots": statuses})


@bp.get("/slots/<slot>")
def slot_detail(slot: str) -> tuple[Response, int]:
    """One slot's status, its full state and its history, newest first."""
    runtime = _holder().current()
    slot_config = _slot_config(runtime, slot)
    stored = _load([slot]).get(slot)
    status = _status(runtime.config, slot_config, stored, _learners([slot])[slot])
    try:
        history = _storage().history(slot, HISTORY_LIMIT)
    except STORAGE_ERRORS:
        raise ApiError(503, "storage_unavailable", "the history cannot be read right now; retry later") from None
    state = None
    if stored is not None and stored.state is not None and "error" not in status:
        state = {k: v for k, v in stored.state.items() if k != "history"}
    return _json({**status, "state": state, "history": history})


def _reason() -> str | None:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON", "body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_type", "request body must be a JSON object", "body")
    for key in body:
        if key != "reason":
            raise ApiError(400, "unknown_field", "unknown field; allowed: reason", key)
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise ApiError(400, "invalid_type", "must be a string", "reason")
    if len(reason) > _MAX_REASON:
        raise ApiError(400, "invalid_value", f"at most {_MAX_REASON} characters", "reason")
    return reason


def _untrainable(*_: Any) -> dict[str, Any]:  # pragma: no cover - act() never trains or gates
    raise RuntimeError("the admin API does not train")


def _act(slot: str, action: str) -> tuple[Response, int]:
    holder = _holder()
    runtime = holder.current()
    slot_config = _slot_config(runtime, slot)
    reason = _reason()
    storage = _storage()
    for _ in range(5):
        stored = _load([slot]).get(slot)
        try:
            state = _state(slot, stored)
        except ValueError as exc:
            message = f"the saved state of slot {slot!r} is unreadable: {exc}"
            raise ApiError(409, "invalid_transition", message) from None
        ladder = SlotLadder(runtime.config, slot, slot_config.escalation, _untrainable, _untrainable, state)
        try:
            entry = ladder.act(action, now=current_app.extensions["storefront.clock"].time(), actor="admin")
        except ValueError as exc:
            raise ApiError(409, "invalid_transition", str(exc)) from None
        entry["actor"] = "admin"  # the same dict is the state's own history entry
        if reason:
            entry["note"] = reason
        write = LadderWrite(slot, ladder.state.to_json(), stored.rev if stored else 0, (entry,))
        try:
            storage.save_ladders([write])
        except LadderConflict:
            continue  # the learner saved this slot since we read it: act on its state instead
        except STORAGE_ERRORS as exc:
            log.error("admin: %s of slot %s not saved: %s", action, slot, exc)
            raise ApiError(503, "storage_unavailable", "the ladder state cannot be saved right now; retry") from None
        announce(entry, "admin")
        publish_stage(slot, ladder.state.stage)
        holder.refresh_ladders(force=True)  # this worker serves the new state from the next request
        saved = StoredLadder(slot, write.state, write.expected_rev + 1, stored.cursor if stored else None)
        status = _status(runtime.config, slot_config, saved, _learners([slot])[slot])
        return _json({"slot": slot, "action": action, "transition": entry, "status": status})
    raise ApiError(409, "concurrent_update", f"slot {slot!r} kept changing while the {action} was applied; retry")


def _register(action: str) -> None:
    def view(slot: str) -> tuple[Response, int]:
        return _act(slot, action)

    view.__name__ = action
    view.__doc__ = f"{action.capitalize()} the slot (see SlotLadder.act)."
    bp.add_url_rule(f"/slots/<slot>/{action}", endpoint=action, view_func=view, methods=["POST"])


for _action in ACTIONS:
    _register(_action)
