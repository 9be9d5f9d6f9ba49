"""What the service and the learner need from storage: small interfaces by concern, and the values they exchange.

Each part of the service depends on the concern it uses — the API on
:class:`DecisionLog`, the joiner on :class:`JoinQueue`, the ladder runner on
:class:`JoinedLog`, :class:`LadderStore`, :class:`HealthReports` and
:class:`LearnerLease` — so a buffer or a spool can stand in front of one
concern without touching the others.  :class:`Storage` is all of them;
:class:`~service.storage.redis_storage.RedisStorage` implements it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# What DecisionLog.add_reward answers (ACCEPTED comes as "accepted:<tier>"; MISSING: the event is not pending).
ACCEPTED, DUPLICATE, LATE, UNKNOWN_SLOT, MISSING = "accepted", "duplicate", "late", "unknown_slot", "missing"


@dataclass(frozen=True)
class StoredLadder:
    """One slot's saved ladder state: the state's JSON, its storage revision, and the cursor it learned up to."""

    slot: str
    state: dict[str, Any] | None
    rev: int
    cursor: str | None


@dataclass(frozen=True)
class LadderWrite:
    """One slot's state to save: compare-and-set on ``expected_rev``, with the history entries to append."""

    slot: str
    state: dict[str, Any] | None  # None: leave the state as it is (a checkpoint alone)
    expected_rev: int
    history: tuple[dict[str, Any], ...] = ()
    checkpoint: dict[str, Any] | None = None  # the slot's learner, saved in the same step (None: leave it)


class LadderConflict(Exception):
    """A ladder save was refused because another writer saved these slots since they were read."""

    def __init__(self, slots: list[str]):
        super().__init__(f"ladder state changed concurrently: {', '.join(slots)}")
        self.slots = slots


class LeaseLost(Exception):
    """A ladder save was refused because the caller no longer holds the learner lease."""


@dataclass(frozen=True)
class PendingEvent:
    """A logged event whose window has closed, with what was posted for it."""

    event_id: str
    event: dict[str, Any]
    rewards: dict[str, dict[str, Any]]
    version: str


class DecisionLog(Protocol):
    """The API's writes: ranked pages, and rewards accepted while an event's window is open."""

    def log_event(self, event: Mapping[str, Any], ttl: float) -> None: ...
    def log_events(self, events: Sequence[tuple[Mapping[str, Any], float]], min_close: float | None = None) -> None: ...
    def add_reward(self, event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float) -> str:
        """``accepted:<tier>``, ``duplicate``, ``late``, ``unknown_slot`` or ``missing``."""
        ...

    def beat_writer(self, writer: str, clean_through: float) -> None: ...
    def forget_writer(self, writer: str) -> None: ...


class StorageStatus(Protocol):
    """Reachability and the counters of ``GET /v1/slots``."""

    def ping(self) -> bool: ...
    def counts(self) -> dict[str, int]: ...


class JoinQueue(Protocol):
    """The events whose window closed, for the joiner to join once each."""

    def due(self, now: float, limit: int) -> list[str]: ...
    def due_length(self) -> int: ...
    def oldest_due(self) -> float | None: ...
    def pending(self, event_id: str) -> PendingEvent | None: ...
    def commit_join(self, pending: PendingEvent, records: list[dict[str, Any]], max_len: int) -> bool | None: ...
    def drop_due(self, event_id: str) -> None: ...
    def writers(self) -> dict[str, tuple[float, float]]: ...
    def forget_writer(self, writer: str) -> None: ...


class JoinedLog(Protocol):
    """The joined records, oldest first, addressed by stream id."""

    def joined(self, start: str = "-", batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def joined_after(self, cursor: str | None, count: int) -> list[tuple[str, dict[str, Any]]]: ...
    def joined_before(
        self, cursor: str | None, count: int, inclusive: bool = True
    ) -> list[tuple[str, dict[str, Any]]]: ...
    def joined_length(self) -> int: ...


class LadderStore(Protocol):
    """Each slot's escalation state (compare-and-set on a revision), its history, and the learner's cursor."""

    def ladder_version(self) -> int: ...
    def load_ladders(self, slots: Sequence[str]) -> dict[str, StoredLadder]: ...
    def ladder_revs(self, slots: Sequence[str]) -> dict[str, int]: ...
    def save_ladders(self, writes: Sequence[LadderWrite], cursor: str | None = None,
                     lease_holder: str | None = None, lease: str = "ladder") -> int: ...  # fmt: skip
    def ladder_cursor(self, lease: str = "ladder") -> str | None: ...
    def history(self, slot: str, limit: int = 100) -> list[dict[str, Any]]: ...
    def load_checkpoints(self, slots: Sequence[str]) -> dict[str, Any]: ...


class HealthReports(Protocol):
    """Challenger failures the workers report and the ladder runner acts on."""

    def report_health(self, errors: Mapping[str, int]) -> None: ...
    def drain_health(self, slots: Sequence[str] | None = None) -> dict[str, int]: ...


class LearnerLease(Protocol):
    """The leases that make one ladder runner the single writer of a slot's (or every slot's) ladder state, and
    the learners' heartbeats that say how many share the slots."""

    def acquire_lease(self, holder: str, ttl: float, lease: str = "ladder", renew_only: bool = False) -> int: ...
    def release_lease(self, holder: str, lease: str = "ladder") -> None: ...
    def lease_holder(self, lease: str = "ladder") -> str | None: ...
    def beat_learner(self, learner: str) -> None: ...
    def forget_learner(self, learner: str) -> None: ...
    def learners(self) -> dict[str, float]: ...


class LadderRunnerStorage(JoinedLog, LadderStore, HealthReports, LearnerLease, Protocol):
    """What the ladder runner needs."""


class AccessStore(Protocol):
    """What the API's access checks need (see :mod:`service.http.access`)."""

    def hit(self, bucket: str, window: int, now: float) -> int: ...
    def shared_secret(self, name: str) -> bytes: ...
    def map_event(self, external: str, event_id: str, slots: Sequence[str], ttl: float) -> bool: ...
    def mapped_event(self, external: str) -> tuple[str, list[str]] | None: ...


class Storage(DecisionLog, StorageStatus, JoinQueue, LadderRunnerStorage, AccessStore, Protocol):
    """Everything: what one process serving the API and running the learner needs."""
