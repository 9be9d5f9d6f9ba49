"""The ladder runners: each slot's escalation, driven from the joined stream by the single writer of its state.

A runner holds a lease (a slot's own, or one for every slot; another learner
takes over within the lease's TTL when the holder dies), reads the joined
records after its cursor, lets the library's
:class:`~bandit.escalation.learner.Learner` observe them, and saves the
states that changed together with the new cursor in one compare-and-set step:
a record is learned from exactly once across restarts, and a state the admin
API saved meanwhile is adopted, never overwritten.  :class:`LadderRunners`
runs one runner per slot and shares the slots out between the learners alive.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from bandit.config import StoreConfig
from bandit.escalation.guardrail import ArmStats, ControlPool
from bandit.escalation.ladder import SlotLadder
from bandit.escalation.learner import Learner, wants_gradient, wants_ladder
from bandit.escalation.state import SlotState
from bandit.eventlog.events import is_learnable
from bandit.learners.gradient import GradientLearner
from service import metrics
from service.audit import announce, prepare_counters, publish_stage
from service.clock import SYSTEM_CLOCK, Clock
from service.storage.protocols import LadderConflict, LadderRunnerStorage, LadderWrite, LeaseLost

LADDER_LEASE = "ladder"  # the lease of a runner of every slot; a slot's runner holds "ladder:<slot>"
_FORGET_LEARNER_AFTER = 30  # lease TTLs without a heartbeat after which a learner's entry is dropped
_RENEWED, _TAKEN = 1, 2  # what acquire_lease says

log = logging.getLogger("storefront.learner")


def _shadow_records(state: SlotState) -> int:
    """Records a slot in shadow has gathered since its challenger was trained (0 otherwise)."""
    return state.seen - state.challenger_since if state.stage in ("shadow", "approval") else 0


# Transitions after which the slot serves a new snapshot, and after which a challenger is new.
_SERVES_NEW = frozenset({"promoted", "published", "rollback", "fallback", "started"})


def publish_learning_health(slot: str, state: SlotState) -> None:
    """The gate's latest look and the snapshots' times, as gauges (the learning-health dashboard)."""
    gate = state.last_gate
    if gate and "challenger_value" in gate:
        for policy in ("challenger", "incumbent"):
            for bound, suffix in (("value", "_value"), ("low", "_low"), ("high", "_high")):
                value = gate.get(policy + suffix)
                if value is not None:
                    metrics.GATE_ESTIMATE.labels(slot, policy, bound).set(value)
        scale = abs(gate["incumbent_value"]) or 1.0
        metrics.GATE_LIFT.labels(slot, "value").set(gate["lift"] / scale)
        metrics.GATE_LIFT.labels(slot, "low").set(gate["relative_lift_low"])
        metrics.GATE_LIFT.labels(slot, "high").set(gate["relative_lift_high"])
        metrics.GATE_EVENTS.labels(slot).set(gate.get("n", 0))
        for gauge, key in ((metrics.GATE_ESS, "ess"), (metrics.GATE_MAX_WEIGHT, "max_weight"),
                           (metrics.GATE_UNSUPPORTED, "unsupported_mass"), (metrics.GATE_TIMESTAMP, "at")):  # fmt: skip
            if gate.get(key) is not None:
                gauge.labels(slot).set(gate[key])
    served = trained = None
    for entry in reversed(state.history):
        kind = entry.get("transition")
        if served is None and kind in _SERVES_NEW:
            served = entry.get("at")
        if trained is None and kind == "trained":
            trained = entry.get("at")
        if served is not None and trained is not None:
            break
    # NaN once there is no such snapshot (rules serve, the challenger was rejected): a gauge's series cannot be
    # removed in multiprocess mode, and a stale time would look like a snapshot that is still there.
    if served is None or state.incumbent.get("tier") == "rules":
        served = math.nan
    if trained is None or state.challenger is None:
        trained = math.nan
    metrics.SNAPSHOT_TIMESTAMP.labels(slot, "incumbent").set(float(served))
    metrics.SNAPSHOT_TIMESTAMP.labels(slot, "challenger").set(float(trained))


@contextmanager
def _every(interval: float, renew: Callable[[], bool]) -> Iterator[None]:
    """Call ``renew`` every ``interval`` seconds in a thread while the block runs (until it returns False)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            if not renew():
                return

    thread = threading.Thread(target=loop, name="ladder-leases", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _state_text(state: SlotState) -> str:
    return json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"))


@dataclass
class _Memory:
    """What a ladder learned in memory from one batch, to undo when its state must be re-read."""

    state: SlotState
    buffer: deque[Mapping[str, Any]]
    since_challenger: list[Mapping[str, Any]]
    arms: dict[str, ArmStats]
    control: ControlPool | None
    health_errors: int

    @classmethod
    def take(cls, ladder: SlotLadder) -> _Memory:
        arms = {k: ArmStats(deque(v.rewards), v.total, v.looked) for k, v in ladder.arms.items()}
        control = ladder.control.copy() if ladder.control is not None else None
        return cls(copy.deepcopy(ladder.state), copy.copy(ladder.buffer), list(ladder.since_challenger), arms,
                   control, ladder.health_errors)  # fmt: skip

    def restore(self, ladder: SlotLadder) -> None:
        ladder.state = self.state
        ladder.buffer = self.buffer
        ladder.since_challenger = self.since_challenger
        ladder.arms = self.arms
        ladder.control = self.control
        ladder.health_errors = self.health_errors


LearnerFactory = Callable[[StoreConfig, Mapping[str, SlotState]], Learner]


@dataclass
class _RunnerSettings:
    """What a ladder runner, and a learner's set of them, are made with (see :class:`LadderRunner`)."""

    storage: LadderRunnerStorage
    config: StoreConfig
    learner_factory: LearnerFactory | None = None
    lease_ttl: float = 10.0
    batch: int = 1000
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    max_batches: int = 50
    clock: Clock = SYSTEM_CLOCK


@dataclass
class LadderRunner(_RunnerSettings):
    """Runs every slot's escalation from the joined stream, as the single writer of ladder states.

    Parameters
    ----------
    storage
        The Redis storage the joiner appends to.
    config
        The store config.
    learner_factory
        ``(config, restored states) -> Learner``; tests replace the trainer and gate this way.
    lease_ttl
        Seconds the lease lasts without renewal: how long a standby waits after the holder dies.
    batch
        Joined records read (and saved after) per step.
    holder
        This runner's id in the lease (default: host, pid and a random suffix).
    max_batches
        Batches learned per :meth:`run_once` at most, so one pass ends and the lease is renewed.
    clock
        Where transition times come from when :meth:`run_once` is not told.
    slot
        Run this slot's ladder only, under its own lease (``ladder:<slot>``) and cursor; None: every slot's,
        under the one lease ``ladder``.  :class:`LadderRunners` runs one per slot and shares them out.
    """

    slot: str | None = None
    learner: Learner | None = field(default=None, init=False)
    cursor: str | None = field(default=None, init=False)
    _revs: dict[str, int] = field(default_factory=dict, init=False)
    _saved: dict[str, str] = field(default_factory=dict, init=False)
    _tiers: dict[str, str] = field(default_factory=dict, init=False)
    _learned: dict[str, tuple[int, int]] = field(default_factory=dict, init=False)

    @property
    def active(self) -> bool:
        """True while this runner holds the lease and runs the ladders."""
        return self.learner is not None

    @property
    def lease(self) -> str:
        """The name of the lease this runner holds while it runs."""
        return LADDER_LEASE if self.slot is None else f"{LADDER_LEASE}:{self.slot}"

    def _scope(self) -> list[str]:
        return list(self.config.slot_names) if self.slot is None else [self.slot]

    def _new_learner(self, states: Mapping[str, SlotState]) -> Learner:
        if self.learner_factory is not None:
            learner = self.learner_factory(self.config, states)
        else:
            scope = None if self.slot is None else [self.slot]
            learner = Learner(self.config, states, gradients=self._restore_gradients(), slots=scope)
        if self.slot is not None:  # this slot's ladder only: another runner may hold the others
            learner.ladders = {slot: ladder for slot, ladder in learner.ladders.items() if slot == self.slot}
        return learner

    def _restore_gradients(self) -> dict[str, GradientLearner]:
        """The gradient learners saved with the states; one that does not fit the config starts afresh (logged)."""
        scope = set(self._scope())
        wanted = [slot.name for slot in self.config.slots if wants_gradient(slot) and slot.name in scope]
        out: dict[str, GradientLearner] = {}
        for slot, data in self.storage.load_checkpoints(wanted).items():
            try:
                out[slot] = GradientLearner.restore(self.config, data)
            except (ValueError, TypeError, KeyError) as exc:
                metrics.SNAPSHOT_ERRORS.labels(slot).inc()
                log.error("slot %s: gradient learner checkpoint refused (%s); it starts afresh from what serves",
                          slot, exc)  # fmt: skip
                continue
            self._learned[slot] = out[slot].progress()
        return out

    def _checkpoints(self) -> dict[str, dict[str, Any]]:
        """The checkpoint of every gradient learner that learned something since its last save."""
        assert self.learner is not None
        out = {}
        for slot, gradient in self.learner.gradients().items():
            progress = gradient.progress()
            if progress != self._learned.get(slot):
                out[slot] = gradient.checkpoint()
        return out

    # ---- one pass ----------------------------------------------------------------------------

    def run_once(self, now: float | None = None) -> list[dict[str, Any]]:
        """Renew the lease; if held, learn from every new joined record; returns the transitions made."""
        held = self.storage.acquire_lease(self.holder, self.lease_ttl, self.lease)
        if not held:
            if self.learner is not None:
                log.warning("lease %s taken by %s; this learner no longer runs it", self.lease,
                            self.storage.lease_holder(self.lease))  # fmt: skip
                self.learner = None
            return []
        if held == _TAKEN and self.learner is not None:
            # The lease lapsed and was free again: another runner may have held it and learned meanwhile, so what
            # is in memory (states, cursor, buffers) may be behind. Start again from what is saved.
            log.warning("lease %s lapsed while this learner ran it; re-reading the saved state", self.lease)
            self.learner = None
        if self.learner is None:
            with self._holding_lease():  # warm-starting gradient learners and re-reading buffers takes a while
                self._restore()
        assert self.learner is not None
        self._adopt()
        errors = self.storage.drain_health(None if self.slot is None else [self.slot])
        for slot, n in errors.items():
            ladder = self.learner.ladders.get(slot)
            if ladder is not None:
                log.warning("slot %s: workers report %d challenger failure(s)", slot, n)
                for _ in range(min(n, 1000)):
                    ladder.report_error()
        transitions: list[dict[str, Any]] = []
        force = bool(errors)
        for _ in range(self.max_batches):
            entries = self.storage.joined_after(self.cursor, self.batch)
            if not entries and not force:
                break
            transitions += self._step(entries, now)
            force = False
            if self.learner is None or len(entries) < self.batch:
                break
            if self.storage.acquire_lease(self.holder, self.lease_ttl, self.lease, renew_only=True) != _RENEWED:
                self.learner = None
                break
        return transitions

    @contextmanager
    def _holding_lease(self) -> Iterator[None]:
        """Renew the lease every third of its TTL while the block runs (a retrain takes 10-30 s).

        If it is lost meanwhile (Redis unreachable long enough, or taken over),
        the save that follows finds out and the batch is left to the new holder.
        """

        def renew() -> bool:
            try:
                return self.storage.acquire_lease(self.holder, self.lease_ttl, self.lease, renew_only=True) == _RENEWED
            except Exception as exc:  # Redis away: the save will tell
                log.warning("could not renew the ladder lease: %s", exc)
                return True

        with _every(self.lease_ttl / 3, renew):
            yield

    def _step(self, entries: list[tuple[str, dict[str, Any]]], now: float | None) -> list[dict[str, Any]]:
        """Observe one batch and save what changed with the new cursor, atomically."""
        learner = self.learner
        assert learner is not None
        now = self.clock.time() if now is None else now
        records = [record for _, record in entries]
        cursor = entries[-1][0] if entries else self.cursor
        memory = {slot: _Memory.take(ladder) for slot, ladder in learner.ladders.items()}
        with self._holding_lease():  # training a tree or running a gate can outlast the lease
            made = learner.observe(records, now)
        checkpoints = self._checkpoints()
        for _ in range(10):
            texts = {slot: _state_text(ladder.state) for slot, ladder in learner.ladders.items()}
            changed = [slot for slot, text in texts.items() if text != self._saved.get(slot)]
            writes = [
                LadderWrite(slot, learner.ladders[slot].state.to_json() if slot in changed else None,
                            self._revs.get(slot, 0), tuple(t for t in made if t.get("slot") == slot),
                            checkpoints.get(slot))
                for slot in learner.ladders if slot in changed or slot in checkpoints
            ]  # fmt: skip
            try:
                self.storage.save_ladders(writes, cursor=cursor, lease_holder=self.holder, lease=self.lease)
            except LeaseLost:
                log.warning("lost the ladder lease before saving; %d records will be learned by its new holder",
                            len(records))  # fmt: skip
                self.learner = None
                return []
            except LadderConflict as exc:
                # The admin API saved these slots since we read them: take its state, learn the batch on it.
                for slot in exc.slots:
                    memory[slot].restore(learner.ladders[slot])
                    self._adopt_slot(slot)
                    made = [t for t in made if t.get("slot") != slot]
                    with self._holding_lease():  # its gradient learner already learned the batch: not twice
                        made += learner.ladders[slot].observe(
                            [r for r in records if r.get("slot") == slot], now, learn=False
                        )
                continue
            for slot in changed:
                self._revs[slot] = self._revs.get(slot, 0) + 1
                self._saved[slot] = texts[slot]
            for slot, gradient in learner.gradients().items():
                if slot in checkpoints:
                    self._learned[slot] = gradient.progress()
                self._publish_gradient(slot, gradient)
            self.cursor = cursor
            for entry in made:
                announce(entry, "learner")
            for slot in {str(t.get("slot")) for t in made}:
                self._publish(slot)
            return made
        raise RuntimeError("ladder states kept changing while being saved; retrying next pass")

    # ---- starting, and following the admin API -------------------------------------------------

    def _restore(self) -> None:
        """Take over: the saved states and cursor, and each ladder's training buffer from the stream tail."""
        stored = self.storage.load_ladders(self._scope())
        states: dict[str, SlotState] = {}
        self._revs, self._saved, self._learned = {}, {}, {}
        for slot, entry in stored.items():
            self._revs[slot] = entry.rev
            try:
                if entry.state is None:
                    raise ValueError("not JSON")
                states[slot] = SlotState.from_json(entry.state)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("slot %s: saved ladder state unreadable (%s); starting it afresh on rules", slot, exc)
                continue
            self._saved[slot] = _state_text(states[slot])
        # A slot's runner taking over from a runner of every slot (an upgrade) goes on from where that one was.
        self.cursor = self.storage.ladder_cursor(self.lease) or (self.storage.ladder_cursor() if self.slot else None)
        self.learner = self._new_learner(states)
        rebuilt = self._rebuild_buffers()
        for slot in self.learner.ladders:
            self._publish(slot)
        log.info("ladder runner %s holds the lease: %d slot(s), resuming after stream id %s (%d records re-read for "
                 "training buffers)", self.holder, len(self.learner.ladders), self.cursor or "-", rebuilt)  # fmt: skip

    def _rebuild_buffers(self) -> int:
        """Refill each ladder (training window, shadow evidence, guardrail windows) from records up to the cursor."""
        assert self.learner is not None
        ladders = self.learner.ladders
        need = {slot: max(ladder.buffer.maxlen or ladder.settings.train_window, _shadow_records(ladder.state))
                for slot, ladder in ladders.items()}  # fmt: skip
        got: dict[str, list[Mapping[str, Any]]] = {slot: [] for slot in ladders}
        budget = max(need.values(), default=0) * max(len(ladders), 1)
        end, inclusive, read = self.cursor, True, 0
        while end and read < budget and any(len(got[s]) < need[s] for s in ladders):
            entries = self.storage.joined_before(end, min(1000, budget - read), inclusive=inclusive)
            if not entries:
                break
            read += len(entries)
            for _, record in entries:
                slot = record.get("slot")
                if slot in got and is_learnable(record) and len(got[slot]) < need[slot]:
                    got[slot].append(record)
            end, inclusive = entries[-1][0], False
        for slot, ladder in ladders.items():
            ladder.resume(list(reversed(got[slot])))
        return read

    def _adopt(self) -> None:
        """Take every state another writer (the admin API) saved since we last read or wrote it."""
        assert self.learner is not None
        revs = self.storage.ladder_revs(list(self.learner.ladders))
        for slot, rev in revs.items():
            if rev != self._revs.get(slot, 0):
                self._adopt_slot(slot)

    def _adopt_slot(self, slot: str) -> None:
        assert self.learner is not None
        entry = self.storage.load_ladders([slot]).get(slot)
        if entry is None:
            return
        ladder = self.learner.ladders[slot]
        self._revs[slot] = entry.rev
        try:
            if entry.state is None:
                raise ValueError("not JSON")
            state = SlotState.from_json(entry.state)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("slot %s: ladder state rev %d unreadable (%s); keeping ours", slot, entry.rev, exc)
            return
        ladder.adopt(state)  # the training buffer stays: it is data, not state
        self._saved[slot] = _state_text(state)
        log.info("slot %s: adopted ladder state rev %d saved by another writer (stage %s%s)", slot, entry.rev,
                 state.stage, ", frozen" if state.frozen else "")  # fmt: skip
        self._publish(slot)

    def _publish_gradient(self, slot: str, gradient: GradientLearner) -> None:
        metrics.GRADIENT_LEARNED.labels(slot).set(gradient.learned)
        metrics.GRADIENT_STEPS.labels(slot).set(gradient.steps)
        metrics.GRADIENT_NAN_HALTS.labels(slot).set(gradient.nan_halts)
        metrics.GRADIENT_KL.labels(slot).set(gradient.last_kl)

    def _publish(self, slot: str) -> None:
        assert self.learner is not None
        state = self.learner.ladders[slot].state
        publish_stage(slot, state.stage)
        publish_learning_health(slot, state)
        tier = str(state.incumbent.get("tier", "rules"))
        old = self._tiers.get(slot)
        if old is not None and old != tier:
            metrics.SLOT_TIER.labels(slot, old).set(0)
        metrics.SLOT_TIER.labels(slot, tier).set(1)
        self._tiers[slot] = tier

    def reset(self) -> None:
        """Forget what is in memory (after a failed pass): the next pass re-reads the states and the cursor."""
        self.learner = None

    def release(self) -> None:
        """Give the lease up (on a clean stop) so a standby takes over at once."""
        if self.learner is not None:
            self.storage.release_lease(self.holder, self.lease)
            self.learner = None


@dataclass
class LadderRunners(_RunnerSettings):
    """One :class:`LadderRunner` per slot with a ladder, shared out between the learners that run.

    Every learner process runs one of these.  Each slot's runner holds its own
    lease, so a slot is learned by one learner at a time, and each learner takes
    at most its fair share of the slots: ``ceil(slots / learners alive)``,
    counting the learners by their heartbeats in Redis (a learner is alive while
    its last beat is younger than the lease's TTL).  A learner holding more
    than its share (a new one started) gives the extra slots up, the last by
    name first, and the newcomer takes them; a learner that dies stops beating,
    the others' shares grow, and they take its slots as its leases expire
    (within the TTL).  While a runner of every slot from an earlier version
    holds the lease ``ladder``, none of these runs (no slot learned twice during
    a rolling upgrade).

    Parameters are :class:`LadderRunner`'s; ``holder`` is this learner's id in
    every lease and in the heartbeats.
    """

    runners: dict[str, LadderRunner] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        prepare_counters(self.config.slot_names)
        for slot in self.config.slots:
            if wants_ladder(slot):
                settings = {f.name: getattr(self, f.name) for f in fields(_RunnerSettings)}
                self.runners[slot.name] = LadderRunner(**settings, slot=slot.name)

    @property
    def active(self) -> bool:
        """True while this learner runs some slot's ladder."""
        return any(runner.active for runner in self.runners.values())

    def held(self) -> list[str]:
        """The slots whose ladder this learner runs."""
        return sorted(slot for slot, runner in self.runners.items() if runner.active)

    def share(self) -> int:
        """How many slots this learner may run: its fair share among the learners alive."""
        beats = self.storage.learners()
        alive = {name for name, age in beats.items() if age <= self.lease_ttl}
        alive.add(self.holder)
        for name, age in beats.items():  # learners that stopped without saying so: forget them after a while
            if age > _FORGET_LEARNER_AFTER * self.lease_ttl:
                self.storage.forget_learner(name)
        return max(math.ceil(len(self.runners) / len(alive)), 1)

    def run_once(self, now: float | None = None) -> list[dict[str, Any]]:
        """Beat, give up what is over the share, run the slots held and take free ones up to the share."""
        self.storage.beat_learner(self.holder)
        legacy = self.storage.lease_holder(LADDER_LEASE)
        if legacy is not None:
            if self.active:
                log.warning("a runner of every slot (%s) holds the lease %r: this learner stops running its slots",
                            legacy, LADDER_LEASE)  # fmt: skip
                self.release_all()
            return []
        share = self.share()
        for slot in self.held()[share:]:
            log.info("slot %s: handed over (this learner's share is %d of %d slots)", slot, share, len(self.runners))
            self.runners[slot].release()
        transitions: list[dict[str, Any]] = []
        with self.keepalive():  # one slot's retrain must not let the others' leases lapse meanwhile
            for slot in sorted(self.runners):
                runner = self.runners[slot]
                if not runner.active and len(self.held()) >= share:
                    continue
                was_active = runner.active
                transitions += runner.run_once(now)
                if runner.active and not was_active:
                    log.info("slot %s: this learner (%s) runs its ladder", slot, self.holder)
        return transitions

    @contextmanager
    def keepalive(self) -> Iterator[None]:
        """Beat, and renew the leases held, every third of the TTL while the block runs (the learner's loop runs
        in it, so a long join pass neither makes this learner look dead nor lets its leases lapse)."""

        def renew() -> bool:
            try:
                self.storage.beat_learner(self.holder)
                for runner in list(self.runners.values()):
                    if runner.active:
                        self.storage.acquire_lease(self.holder, self.lease_ttl, runner.lease, renew_only=True)
            except Exception:  # Redis away: the save that follows finds out whether a lease was lost
                log.debug("lease renewal failed", exc_info=True)
            return True

        with _every(self.lease_ttl / 3, renew):
            yield

    def reset(self) -> None:
        """Forget what is in memory (after a failed pass): each runner re-reads its state and cursor."""
        for runner in self.runners.values():
            runner.learner = None

    def release_all(self) -> None:
        for runner in self.runners.values():
            runner.release()

    def release(self) -> None:
        """Give every lease up and stop counting as a learner (a clean stop): the others take over at once."""
        self.release_all()
        self.storage.forget_learner(self.holder)
