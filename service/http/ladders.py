"""Escalation on the serving side: each worker serves the slot policies the saved ladder states describe.

The learner (and the admin API) save each slot's :class:`~bandit.escalation.state.SlotState`
in Redis and bump one version counter (see :mod:`service.storage`).  A worker
reads that counter at most once per ``check_every`` seconds, on a request, and
only when it moved reloads the states and rebuilds the slots whose serving
arms changed: no extra Redis round trip on ``/v1/rank`` otherwise, and no
restart to pick up a new model.

Faults never stop serving.  A state or snapshot that does not load (corrupt
JSON, a snapshot naming an unknown item, an unknown tier...) is refused: the
slot keeps the policy it served, the error is logged naming the slot and
counted in ``storefront_snapshot_errors_total{slot}``.  With Redis down the
current policies stay (and the rules tier serves as ever).  A challenger that
raises while serving is counted in ``storefront_challenger_errors_total{slot}``
and reported to the learner through the ``health`` hash, flushed with the
next version check, so the learner can send the slot back to rules.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bandit.config import SlotConfig, StoreConfig
from bandit.escalation.ladder import build_policy, canary_serving, serving_policy
from bandit.escalation.state import SlotState, snapshot_version
from bandit.policies.base import Policy
from bandit.policies.mixture import LadderPolicy
from service import metrics
from service.storage import STORAGE_ERRORS
from service.storage.protocols import HealthReports, LadderStore

log = logging.getLogger("storefront")


class WatchedStorage(LadderStore, HealthReports, Protocol):
    """What a worker reads ladder states from and reports challenger failures to."""


# What a ladder state, a snapshot or a policy built from them can raise when it is corrupt or does not fit the config.
LOAD_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


def live_tier(slot: SlotConfig, state: SlotState | None) -> str:
    """The tier serving most of a slot's traffic: its ladder's incumbent, else the configured tier."""
    if state is None:
        return slot.tier
    return str(state.incumbent.get("tier", slot.tier))


def secondary_share(slot: SlotConfig, state: SlotState | None) -> float:
    """Traffic share of the slot's secondary arm: a gradient canary, the ramping challenger, or the holdout after a
    promotion."""
    if state is None:
        return 0.0
    settings = slot.escalation
    if canary_serving(state, settings):
        return float(settings.canary)
    if state.stage == "ramp" and state.challenger:
        return float(settings.ramp[min(state.ramp_step, len(settings.ramp) - 1)])
    if state.stage == "promoted" and state.previous and settings.holdout > 0:
        return float(settings.holdout)
    return 0.0


def holdout_share(slot: SlotConfig, state: SlotState | None) -> float:
    """Traffic share of the previous tier kept as a live control (after a promotion, and beside a later challenger
    in canary or shadow)."""
    if state is None or state.previous is None or state.stage == "ramp":
        return 0.0
    return float(slot.escalation.holdout)


def slot_status(slot: SlotConfig, state: SlotState | None) -> dict[str, Any]:
    """The escalation fields of a slot's status (``GET /v1/slots`` and the admin API)."""
    return {
        "tier": live_tier(slot, state),
        "mode": slot.escalation.mode,
        "stage": state.stage if state else "incumbent",
        "share": secondary_share(slot, state),
        "holdout": holdout_share(slot, state),
        "incumbent_version": snapshot_version(state.incumbent) if state else None,
        "challenger_version": snapshot_version(state.challenger) if state else None,
        "canary_version": snapshot_version(state.canary) if state else None,
        "frozen": bool(state.frozen) if state else False,
        "last_gate": state.last_gate if state else None,
    }


@dataclass
class _Served:
    """What a worker serves for one slot, and which saved state it came from."""

    rev: int
    signature: str
    state: SlotState
    policy: LadderPolicy


class LadderWatcher:
    """A worker's view of the saved ladder states: polls their version, builds each slot's serving policy.

    Parameters
    ----------
    storage
        Where the states are saved.
    check_every
        Seconds between two reads of the version counter (0: on every request, for tests).
    """

    def __init__(self, storage: WatchedStorage, check_every: float = 1.0):
        self.storage = storage
        self.check_every = check_every
        self.next_check = 0.0
        self._version: int | None = None
        self._config_version: str | None = None
        self._served: dict[str, _Served] = {}
        self._refused: dict[str, str] = {}  # slot -> signature of the state last refused, to log it once
        self._health: dict[str, int] = {}
        self._health_lock = threading.Lock()
        self._storage_down = False

    # ---- challenger failures -------------------------------------------------------------

    def on_error(self, slot: str) -> Callable[[str, Exception], None]:
        """The hook a slot's :class:`LadderPolicy` calls when its challenger fails (never raises)."""

        def hook(which: str, exc: Exception) -> None:
            metrics.CHALLENGER_ERRORS.labels(slot).inc()
            with self._health_lock:
                self._health[slot] = self._health.get(slot, 0) + 1
            log.warning("slot %s: the %s policy failed (%s: %s); the primary served", slot, which,
                        type(exc).__name__, exc)  # fmt: skip

        return hook

    def flush_health(self) -> None:
        """Report the failures counted since the last flush to the learner (best effort)."""
        with self._health_lock:
            pending, self._health = self._health, {}
        if not pending:
            return
        try:
            self.storage.report_health(pending)
        except STORAGE_ERRORS as exc:
            metrics.STORAGE_ERRORS.labels("report_health").inc()
            log.warning("challenger failures not reported (%s); they will be retried", exc)
            with self._health_lock:
                for slot, n in pending.items():
                    self._health[slot] = self._health.get(slot, 0) + n

    # ---- the version check ----------------------------------------------------------------

    def refresh(
        self, config: StoreConfig, current: Mapping[str, Policy], force: bool = False
    ) -> tuple[dict[str, Policy], dict[str, SlotState]] | None:
        """New ``(policies, states)`` when the saved states (or the config) changed since the last call, else None.

        ``current`` is what the worker serves now: a slot whose new state fails
        to load keeps its entry there.
        """
        self.next_check = time.monotonic() + self.check_every
        self.flush_health()
        try:
            version = self.storage.ladder_version()
        except STORAGE_ERRORS as exc:
            self._down(exc)
            return None
        same_config = config.version == self._config_version
        if not force and same_config and version == self._version:
            return None
        try:
            stored = self.storage.load_ladders(config.slot_names)
        except STORAGE_ERRORS as exc:
            self._down(exc)
            return None
        if self._storage_down:
            log.info("ladder states readable again (version %d)", version)
            self._storage_down = False
        if not same_config:
            self._served = {}
            self._refused = {}
        policies: dict[str, Policy] = {}
        states: dict[str, SlotState] = {}
        for slot in config.slots:
            entry = stored.get(slot.name)
            if entry is None:
                self._served.pop(slot.name, None)
                continue
            served = self._served.get(slot.name)
            if served is None or served.rev != entry.rev:
                served = self._load(config, slot, entry.state, entry.rev, served, current if same_config else {})
            if served is not None:
                self._served[slot.name] = served
                policies[slot.name] = served.policy
                states[slot.name] = served.state
            elif same_config and slot.name in current:
                policies[slot.name] = current[slot.name]
        self._version = version
        self._config_version = config.version
        return policies, states

    def _down(self, exc: Exception) -> None:
        if not self._storage_down:
            metrics.STORAGE_ERRORS.labels("ladder_version").inc()
            log.warning("cannot read ladder states (%s); serving the current policies", exc)
            self._storage_down = True

    def _load(self, config: StoreConfig, slot: SlotConfig, raw: Any, rev: int, served: _Served | None,
              current: Mapping[str, Policy]) -> _Served | None:  # fmt: skip
        """Build the slot's serving policy from a saved state; on failure the previous one (or None)."""
        signature = ""
        try:
            if raw is None:
                raise ValueError("the saved ladder state is not JSON")
            state = SlotState.from_json(raw)
            if state.slot != slot.name:
                raise ValueError(f"the saved state is for slot {state.slot!r}")
            signature = json.dumps([state.stage, state.incumbent, state.challenger, state.previous, state.ramp_step],
                                   sort_keys=True)  # fmt: skip
            if served is not None and served.signature == signature:
                policy = served.policy  # same arms: only counters moved
            else:
                policy = serving_policy(slot.name, state, lambda spec: build_policy(config, slot.name, spec),
                                        slot.escalation)  # fmt: skip
                policy.on_error = self.on_error(slot.name)
        except LOAD_ERRORS as exc:
            if self._refused.get(slot.name) != (signature or repr(raw)[:200]):
                self._refused[slot.name] = signature or repr(raw)[:200]
                metrics.SNAPSHOT_ERRORS.labels(slot.name).inc()
                keeping = "its current policy" if (served or slot.name in current) else "its rules"
                log.error("slot %s: ladder state refused, keeping %s: %s", slot.name, keeping, exc)
            return served
        self._refused.pop(slot.name, None)
        return _Served(rev, signature, state, policy)
