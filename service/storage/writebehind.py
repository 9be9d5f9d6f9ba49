"""Write-behind for the API's writes: decisions batched to Redis, and a durable spool when Redis is away.

One :class:`WriteBehind` per worker process.  ``POST /v1/rank`` hands its page
to :meth:`WriteBehind.log_event` and answers at once; a background thread
writes what accumulated every ``flush_interval`` seconds (or as soon as
``max_batch`` pages wait) in **one round trip** (a pipeline of the
``log_event`` script).

When a write fails (Redis stopped, unreachable, failing over) the batch is
appended to this worker's **spool** — a JSON-lines file under ``spool_dir``,
``fsync``-ed after every append — and the worker is *degraded*: it logs one
line, keeps spooling, and retries Redis with a backoff (0.1 s doubling to
``retry_max``).  When Redis answers again it replays the spool in order, logs
one line, and truncates the file.  Rewards that cannot be stored while Redis is
away are spooled too (answered ``202``) and replayed with the time they were
received, so the window is judged as it was.

The invariants, and how they hold:

- *The join never closes a window on a decision that has not reached Redis*:
  a decision enters the join queue (``due``) only when it is written; a
  replayed one is queued at ``max(window close, replay time + replay_grace)``,
  so the rewards other workers spooled for it (replayed within their own
  backoff) land before the join reads it.
- *The join never closes a window on a reward held in a spool*: every
  worker beats (``writers`` in Redis, once a second) the time up to which all
  it accepted is in Redis; a worker away from Redis stops beating, and the
  learner does not join pages whose window closed after a stopped worker's
  last beat until it beats again (it replays first) or has been silent for
  the learner's hold (then it is taken for dead and forgotten).  A worker that
  stops gracefully takes its beat out.
- *A reward for a decision still in a buffer or a spool is accepted and
  joined*: a reward whose event is not in Redis yet, while the window encoded
  in its id is open, is queued in the worker that received it and retried on
  every tick until its decision arrives, then stored as any reward; if the
  decision never arrives (lost to a ``SIGKILL``), it is dropped when the window
  plus ``pending_horizon`` has passed, counted as ``unknown``.  A reward
  posted to the worker that ranked the page flushes that worker first.
- *A decision is joined exactly once*: ``log_event`` ignores an event already
  in Redis, so replaying a chunk twice (a crash between writing it and
  trimming the spool) logs it once; the join's own guarantees do the rest.
- *What a SIGKILL can lose*: the pages submitted since the last flush, at
  most ``flush_interval`` worth (plus one batch being written): counted, since
  ``storefront_decision_log_submitted_total`` and ``…_written_total`` live in
  prometheus-client's multiprocess files, which outlive the process — their
  difference over dead workers is what was lost.  A spool survives a kill: the
  next worker started on the same folder adopts the spools of dead processes.
- *Bounded*: the spool refuses new pages past ``spool_max_bytes`` (one log
  line, ``storefront_spool_bytes``, ``…_dropped_total{reason="spool_full"}``).

``flush_interval = 0`` writes synchronously in the request (what the unit
tests use: a page is in Redis when ``rank`` returns).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis

from service import metrics
from service.storage.protocols import ACCEPTED, DUPLICATE, LATE, MISSING, UNKNOWN_SLOT
from service.storage.redis_storage import STORAGE_ERRORS

log = logging.getLogger("storefront")

QUEUED = "queued"
# Spools are named by host and pid: on a folder shared by several machines or containers (whose pids overlap),
# a worker only adopts the spools of dead processes of its own host.
_HOST = socket.gethostname().replace("/", "_")
_FRESH = 0.5  # seconds after its rank during which a reward's missing page is most likely still in a buffer
_FAILURES = STORAGE_ERRORS
# Every writer of this process, for gunicorn's worker_exit hook to flush on a graceful stop.
WRITERS: list[WriteBehind] = []


def close_all() -> None:
    """Flush and stop every writer of this process (graceful shutdown)."""
    for writer in WRITERS:
        writer.close()


class Spool:
    """An append-only JSON-lines file of one process, fsync-ed per append; replayed and truncated on recovery."""

    def __init__(self, directory: Path, max_bytes: int, name: str | None = None):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / (name or f"spool-{_HOST}-{os.getpid()}.jsonl")
        self.max_bytes = max_bytes
        self._size = self.path.stat().st_size if self.path.exists() else 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, entries: list[dict[str, Any]]) -> bool:
        """Append durably; False (nothing written) when the entries would pass ``max_bytes``."""
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode("utf-8")
        if self._size + len(data) > self.max_bytes:
            return False
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._size += len(data)
        return True

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:  # a torn last line from a crash mid-append: it was never acknowledged
                    log.warning("spool %s: skipped an unreadable line", self.path.name)
        return out

    def rewrite(self, entries: list[dict[str, Any]]) -> None:
        """Replace the content (what is left after a partial replay), atomically."""
        if not entries:
            self.path.unlink(missing_ok=True)
            self._size = 0
            return
        tmp = self.path.with_suffix(".tmp")
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode("utf-8")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._size = len(data)

    def adopt_orphans(self) -> int:
        """Move the spools of dead processes into this one; returns how many entries were taken."""
        taken: list[dict[str, Any]] = []
        claimed_paths: list[Path] = []
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path == self.path or _alive(path):
                continue
            claimed = path.with_name(f"adopting-{os.getpid()}-{path.name}")
            try:
                os.rename(path, claimed)  # atomic: one adopter wins
            except OSError:
                continue
            taken += Spool(self.directory, 1 << 62, claimed.name).read()
            claimed_paths.append(claimed)
        if taken:
            self.rewrite(self.read() + taken)
            log.info("spool: adopted %d entries spooled by stopped workers", len(taken))
        for claimed in claimed_paths:  # only once this spool holds their entries: a crash between loses nothing
            claimed.unlink()
        return len(taken)


def _alive(path: Path) -> bool:
    """Whether the process that owns a spool may still write it: another host's spools are never adopted."""
    host, _, pid_text = path.stem.removeprefix("spool-").rpartition("-")
    if host != _HOST:
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether a process has exited and only waits to be reaped (Linux's ``/proc``; elsewhere: unknown, False).

    A worker killed with its master is re-parented to the init process, and until that reaps it the pid still
    answers ``kill(pid, 0)``; an init that reaps seldom (a container's) would otherwise hold its spool back.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            after_comm = f.read().rpartition(b")")[2].split()  # "pid (comm) state …": comm may hold anything
    except OSError:
        return False
    return bool(after_comm) and after_comm[0] in (b"Z", b"X")


class WriteBehind:
    """Batched, spooled writes of one worker in front of the storage (see the module docstring).

    ``storage`` needs ``log_events(events, min_close)`` and ``add_reward(...)``
    (:class:`~service.storage.redis_storage.RedisStorage`).
    """

    def __init__(
        self,
        storage: Any,
        spool: Spool | None = None,
        flush_interval: float = 0.005,
        max_batch: int = 500,
        replay_grace: float = 60.0,
        pending_horizon: float = 300.0,
        retry_max: float = 5.0,
        max_waiting: int = 100_000,
        beat_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self.storage = storage
        self.spool = spool
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        # A replayed page must wait for the rewards other workers spooled for it: they replay within their own
        # backoff (at most retry_max after Redis returns), so the grace is at least twice that.
        self.replay_grace = max(replay_grace, 2 * retry_max)
        self.pending_horizon = pending_horizon
        self.retry_max = retry_max
        self.max_waiting = max_waiting  # rewards waiting in memory for their page (forged fresh ids cannot grow it)
        self.clock = clock
        self.beat_interval = beat_interval
        self.writer_id = f"{_HOST}-{os.getpid()}-{secrets.token_hex(3)}"
        self._last_beat = 0.0
        self._beaten = False  # in Redis's ``writers`` hash (the learner waits for us when we go quiet)
        self._pending: deque[tuple[Mapping[str, Any], float]] = deque()
        self._rewards: list[dict[str, Any]] = []  # rewards waiting for their decision (in memory)
        self._lock = threading.Lock()  # one writer at a time (the thread, a reward's flush, close)
        self._wake = threading.Event()
        self._closed = False
        self.degraded = False
        self._late_told = 0  # late queued rewards logged one by one (the first few after each recovery)
        self._backoff = 0.1
        self._next_retry = 0.0
        self._thread: threading.Thread | None = None
        if spool is not None:
            spool.adopt_orphans()
            if spool.size:
                self.degraded = True  # a backlog to replay first
            metrics.SPOOL_BYTES.set(spool.size)
        metrics.STORAGE_DEGRADED.set(1 if self.degraded else 0)  # the series exists from the start (alerts)
        if flush_interval > 0:
            self._thread = threading.Thread(target=self._run, name="storefront-writer", daemon=True)
            self._thread.start()
            metrics.BUFFER.enabled = True  # the rank path's counters are written by this thread's ticks

    # ---- the request side ------------------------------------------------------------

    def log_event(self, event: Mapping[str, Any], ttl: float) -> bool:
        """Queue one ranked page for the log; False when it cannot be kept (spool full while Redis is away)."""
        if self.degraded and self.spool is not None and self.spool.size >= self.spool.max_bytes:
            metrics.DECISIONS_DROPPED.labels("spool_full").inc()
            return False
        metrics.DECISIONS_SUBMITTED.inc()
        if self._thread is None:  # synchronous: in storage (or the spool) when this returns
            with self._lock:
                if self.degraded and self.clock() >= self._next_retry:
                    self._replay(self.clock())
                return self._write([(event, ttl)])
        self._pending.append((event, ttl))
        if len(self._pending) >= self.max_batch:
            self._wake.set()
        return True

    def add_reward(self, event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float,
                   window_close: float, issued: float | None = None) -> str:  # fmt: skip
        """Store a reward, or queue it (``queued``) when its decision or Redis is not there yet.

        ``issued`` (when the page was ranked): a reward posted the moment after
        its rank, whose page another worker has not flushed yet, waits one
        flush interval and looks again before it is queued.
        """
        if self._pending:
            self.flush()  # a reward after a rank in this worker: its page first
        if not self.degraded:
            try:
                result = str(self.storage.add_reward(event_id, slot, kind, payload, now, ttl))
                for _ in range(3):  # at most ~50 ms, and only the moment after the rank
                    if result != MISSING or issued is None or not 0 <= now - issued < _FRESH:
                        break
                    time.sleep(max(self.flush_interval, 0.001) * 2 + 0.005)
                    result = str(self.storage.add_reward(event_id, slot, kind, payload, now, ttl))
            except _FAILURES as exc:
                metrics.STORAGE_ERRORS.labels("add_reward").inc()
                self._went_away(exc)
            else:
                if result != MISSING or now > window_close or len(self._rewards) >= self.max_waiting:
                    return result  # missing with no room to wait: answered as never logged
                entry = _reward_entry(event_id, slot, kind, payload, now, ttl, window_close)
                with self._lock:
                    self._rewards.append(entry)
                metrics.REWARDS_QUEUED.labels("decision_pending").inc()
                return QUEUED
        if now > window_close:
            # Redis would answer "late" (the window, counted from the rank, has closed): say so now rather than
            # queue a reward that can only be refused when it is replayed — the client gets its 410 at once.
            return LATE
        entry = _reward_entry(event_id, slot, kind, payload, now, ttl, window_close)
        with self._lock:
            if not self.degraded:
                # The writer replayed the spool and found Redis back since the check above: a reward spooled now
                # would wait there until the next outage.  Store it as any other.
                back = True
            else:
                back = False
                if self.spool is None or not self.spool.append([entry]):
                    metrics.REWARDS_DROPPED.labels("spool_full" if self.spool else "no_spool").inc()
                    raise redis.ConnectionError("rewards cannot be stored or spooled right now")
                metrics.SPOOL_BYTES.set(self.spool.size)
        if back:
            return self.add_reward(event_id, slot, kind, payload, now, ttl, window_close, issued)
        metrics.REWARDS_QUEUED.labels("storage_away").inc()
        return QUEUED

    def ready(self) -> dict[str, Any]:
        """For ``/readyz``: degraded or not, and the spool's size."""
        room = self.spool is not None and self.spool.size < self.spool.max_bytes
        return {"degraded": self.degraded, "spool_bytes": self.spool.size if self.spool else 0, "spool_room": room,
                "pending": len(self._pending), "rewards_waiting": len(self._rewards)}  # fmt: skip

    # ---- the writer ------------------------------------------------------------------

    def flush(self) -> None:
        """Write what waits now (the caller's thread)."""
        with self._lock:
            self._tick()

    def close(self) -> None:
        """Flush (to Redis, or the spool) and stop the thread: graceful shutdown."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._tick()
            if self._rewards and self.spool is not None:  # rewards still waiting for their decision survive
                self.spool.append(self._rewards)
                self._rewards = []
            if not self.degraded and not (self.spool and self.spool.size) and self._beaten:
                # Nothing of ours is left outside Redis: the learner need not wait for us (else it forgets us
                # after its hold).
                with contextlib.suppress(*_FAILURES):
                    self.storage.forget_writer(self.writer_id)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                with self._lock:
                    self._tick()
            except Exception:  # the writer must outlive any surprise; the next tick retries
                log.exception("decision writer: unexpected error")

    def _tick(self) -> None:
        metrics.BUFFER.flush()
        batch = []
        while self._pending:
            batch.append(self._pending.popleft())
        if batch:
            self._write(batch)
        now = self.clock()
        if self.degraded and now >= self._next_retry:
            self._replay(now)
        if self._rewards and not self.degraded:
            self._retry_rewards(now)
        if self._thread is not None and not self.degraded and now - self._last_beat >= self.beat_interval:
            self._beat(now)

    def _beat(self, now: float) -> None:
        try:
            self.storage.beat_writer(self.writer_id, now)
            self._last_beat = now
            self._beaten = True
        except _FAILURES as exc:
            metrics.STORAGE_ERRORS.labels("log_event").inc()
            self._went_away(exc)

    def _write(self, batch: list[tuple[Mapping[str, Any], float]]) -> bool:
        """Store a batch in Redis, else in the spool; False when it had to be dropped."""
        if not self.degraded:
            try:
                self.storage.log_events(batch)
                metrics.DECISIONS_WRITTEN.labels("redis").inc(len(batch))
                return True
            except _FAILURES as exc:
                metrics.STORAGE_ERRORS.labels("log_event").inc()
                self._went_away(exc)
                stored: frozenset[str] = getattr(exc, "stored", frozenset())  # a cluster wrote some partitions
                if stored:
                    metrics.DECISIONS_WRITTEN.labels("redis").inc(len(stored))
                    batch = [(event, ttl) for event, ttl in batch if event["event_id"] not in stored]
        entries = [{"t": "d", "e": event, "ttl": ttl} for event, ttl in batch]
        if self.spool is not None and self.spool.append(entries):
            metrics.DECISIONS_WRITTEN.labels("spool").inc(len(batch))
            metrics.SPOOL_BYTES.set(self.spool.size)
            return True
        reason = "spool_full" if self.spool is not None else "no_spool"
        metrics.DECISIONS_DROPPED.labels(reason).inc(len(batch))
        if reason == "spool_full":
            log.error("spool full (%d bytes): %d decisions dropped", self.spool.max_bytes if self.spool else 0,
                      len(batch))  # fmt: skip
        return False

    def _went_away(self, exc: BaseException) -> None:
        if not self.degraded:
            log.error("storage unreachable (%s): spooling decisions and rewards, retrying with backoff", exc)
            metrics.STORAGE_DEGRADED.set(1)
        self.degraded = True
        self._backoff = 0.1
        self._next_retry = self.clock() + self._backoff

    def _replay(self, now: float) -> None:
        entries = self.spool.read() if self.spool is not None else []
        done = 0
        waiting: list[dict[str, Any]] = []
        try:
            self.storage.ping()
            for start in range(0, len(entries), self.max_batch):
                chunk = entries[start : start + self.max_batch]
                decisions = [(e["e"], e["ttl"]) for e in chunk if e.get("t") == "d"]
                if decisions:
                    self.storage.log_events(decisions, min_close=now + self.replay_grace)
                for entry in chunk:
                    if entry.get("t") == "r" and not self._apply_reward(entry, now):
                        waiting.append(entry)
                done = start + len(chunk)
        except _FAILURES:
            if self.spool is not None and done:
                self.spool.rewrite(waiting + entries[done:])
                metrics.SPOOL_BYTES.set(self.spool.size)
            self._backoff = min(self.retry_max, self._backoff * 2)
            self._next_retry = now + self._backoff
            return
        if self.spool is not None:
            self.spool.rewrite([])
            metrics.SPOOL_BYTES.set(0)
        self._rewards += waiting
        self.degraded = False
        metrics.STORAGE_DEGRADED.set(0)
        log.info("storage reachable again: %d spooled entries replayed", len(entries))
        self._late_told = 0
        self._last_beat = 0.0  # beat on this tick, once the waiting rewards had their try: the learner goes on

    def _retry_rewards(self, now: float) -> None:
        still = []
        try:
            for entry in self._rewards:
                if not self._apply_reward(entry, now):
                    still.append(entry)
        except _FAILURES as exc:
            self._went_away(exc)
            return
        self._rewards = still

    def _apply_reward(self, entry: dict[str, Any], now: float) -> bool:
        """Store a queued reward; False while its decision has not arrived (and may still)."""
        result = str(self.storage.add_reward(entry["id"], entry["slot"], entry["kind"], entry["payload"],
                                             entry["now"], entry["ttl"]))  # fmt: skip
        if result == MISSING:
            if now <= entry["close"] + self.pending_horizon:
                return False
            metrics.JOIN_OUTCOMES.labels("unknown").inc()
            metrics.REWARDS_DROPPED.labels("decision_never_logged").inc()
            return True
        outcome = {DUPLICATE: "duplicate", LATE: "late", UNKNOWN_SLOT: "unknown"}.get(result)
        if outcome == "late" and self._late_told < _LATE_TOLD:
            self._late_told += 1
            log.warning(
                "queued reward for event %s slot %s arrived after its page was joined: counted late, not learned "
                "(accepted %.1fs ago; the window closed %.1fs ago)%s", entry["id"], entry["slot"],
                now - entry["now"], now - entry["close"],
                "; further late rewards are only counted, in storefront_rewards_replayed_total{outcome=\"late\"}"
                if self._late_told == _LATE_TOLD else "",
            )  # fmt: skip
        if result.startswith(ACCEPTED):
            metrics.count_stored_reward(entry["slot"], result.partition(":")[2], entry["kind"], entry["payload"])
        elif outcome in ("late", "unknown"):
            metrics.JOIN_OUTCOMES.labels(outcome).inc()
        metrics.REWARDS_REPLAYED.labels(outcome or "accepted").inc()
        return True


_LATE_TOLD = 5  # late queued rewards a worker logs one by one after each recovery


def _reward_entry(event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float,
                  close: float) -> dict[str, Any]:  # fmt: skip
    return {"t": "r", "id": event_id, "slot": slot, "kind": kind, "payload": payload, "now": now, "ttl": ttl,
            "close": close}  # fmt: skip
