"""A slot's escalation state: what must survive a learner restart (JSON), down to the names of its arms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bandit.config import StoreConfig
from bandit.policies.base import arm_key

STAGES = ("incumbent", "canary", "shadow", "approval", "ramp", "promoted")
STATE_KIND = "storefront.ladder.v1"
TRANSITIONS = (
    "started",
    "canary",
    "published",
    "trained",
    "train_skipped",
    "no_change",
    "gate_wait",
    "rejected",
    "awaiting_approval",
    "ramp",
    "promoted",
    "holdout",
    "rollback",
    "fallback",
    "freeze",
    "unfreeze",
)  # fmt: skip  (every kind of history entry; the metrics and the admin API's schema list them)


@dataclass
class SlotState:
    """Everything about one slot's ladder that must survive a learner restart (JSON)."""

    slot: str
    stage: str = "incumbent"
    incumbent: dict[str, Any] = field(default_factory=lambda: {"tier": "rules", "snapshot": None})
    previous: dict[str, Any] | None = None
    challenger: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None  # a gradient canary learning beside a tree challenger (see the ladder)
    canary_since: int = 0  # value of `seen` when that canary started
    ramp_step: int = 0
    frozen: bool = False
    seen: int = 0  # joined learnable events observed, ever
    challenger_since: int = 0  # value of `seen` when the challenger was trained
    step_since: int = 0  # joined events (both arms) since the current ramp step began
    next_train_at: int = 0
    tree_trained_at: int = 0  # value of `seen` when a tree was last trained (0: never)
    next_gate_at: int = 0
    gate_looks: int = 0  # looks the gate took at the current challenger
    last_gate: dict[str, Any] | None = None
    version: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = STATE_KIND
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlotState:
        if data.get("kind") != STATE_KIND:
            raise ValueError(f"not a ladder state (kind must be {STATE_KIND!r})")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        state = cls(**values)
        if state.stage not in STAGES:
            raise ValueError(f"unknown stage {state.stage!r}")
        return state


def snapshot_version(spec: Mapping[str, Any] | None) -> str | None:
    """The snapshot version of an arm spec ``{"tier", "snapshot"}`` (None for rules, or no arm)."""
    if not spec:
        return None
    snapshot = spec.get("snapshot")
    return str(snapshot.get("version")) if isinstance(snapshot, Mapping) else None


def arm_name(spec: Mapping[str, Any] | None) -> str | None:
    """``tier`` or ``tier:snapshot version`` of an arm spec, for people (history, logs, the admin API)."""
    if not spec:
        return None
    version = snapshot_version(spec)
    return f"{spec.get('tier')}:{version}" if version else str(spec.get("tier"))


def served_version(config: StoreConfig, spec: Mapping[str, Any]) -> str:
    """The ``policy_version`` an arm logs: its snapshot's version, or the config's for rules."""
    return snapshot_version(spec) or config.version


def spec_arm(config: StoreConfig, spec: Mapping[str, Any]) -> str:
    """The guardrail's name for an arm: its served version, or ``gradient`` for the gradient tier, whose
    snapshots change as it learns (each trust-region step is one lineage, judged as one arm)."""
    return arm_key(str(spec.get("tier")), served_version(config, spec))


def record_arm(record: Mapping[str, Any]) -> str:
    """The guardrail's arm of a joined record (see :func:`spec_arm`)."""
    return arm_key(str(record.get("tier")), str(record.get("policy_version", "")))
