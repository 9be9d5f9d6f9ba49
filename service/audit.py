"""Escalation transitions, told: one log line and one counter per transition, and the stage gauge.

Both writers of ladder states (the learner's ladder runner and the admin API)
announce what they did here, so the audit trail reads the same whoever acted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bandit.escalation.state import STAGES
from service import metrics

log = logging.getLogger("storefront")


def announce(entry: Mapping[str, Any], actor: str) -> None:
    """Log and count one transition (the history entry is saved by the caller, with the state)."""
    slot, transition = str(entry.get("slot")), str(entry.get("transition"))
    metrics.LADDER_TRANSITIONS.labels(slot, transition).inc()
    log.info("ladder slot=%s transition=%s stage=%s actor=%s reason=%s", slot, transition, entry.get("stage"), actor,
             entry.get("reason"))  # fmt: skip


#: The transitions the dashboards' annotations and alerts count with ``increase()``.
WATCHED = ("canary", "trained", "ramp", "promoted", "rejected", "rollback", "fallback")


def prepare_counters(slots: Iterable[str]) -> None:
    """Create each slot's watched transition counters at 0 in this process: ``increase()`` over a series that
    first appears at 1 is 0, so without this a store's first rollback would never show on a dashboard."""
    for slot in slots:
        for transition in WATCHED:
            metrics.LADDER_TRANSITIONS.labels(slot, transition)


def publish_stage(slot: str, stage: str) -> None:
    for name in STAGES:
        metrics.LADDER_STAGE.labels(slot, name).set(1 if name == stage else 0)
