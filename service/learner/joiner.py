"""The join: each decision with its rewards, once its reward window closes.

The joiner polls the ``due`` set for events whose window closed (plus a small
grace for clock skew between API workers and the learner), builds one joined
record per slot decision with :func:`bandit.eventlog.events.joined_records`,
and commits them in one atomic step (see :mod:`service.storage.redis_storage`).
Killing it at any point loses nothing and duplicates nothing: an event leaves
``due`` in the same step that appends its records.  Several learners may run;
each event is still joined once.

Rewards a worker spooled while Redis was away reach Redis only when that
worker replays, up to its retry backoff after Redis returns.  So the join
waits for them: every API worker beats in Redis (``writers``: the time up to
which everything it accepted is stored, stamped with Redis's clock); a beat
older than ``writer_stale`` means the worker is away from Redis, stuck or
dead, and pages whose window closed after its last beat wait until it beats
again, or until it has been silent for ``writer_hold`` past going stale and
Redis has answered this learner for ``writer_hold`` (then it is taken for
gone, forgotten, and one line says so).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass

from bandit.config import StoreConfig
from bandit.eventlog.events import joined_records
from service import metrics
from service.clock import SYSTEM_CLOCK, Clock
from service.storage import STORAGE_ERRORS
from service.storage.protocols import JoinQueue

log = logging.getLogger("storefront.learner")


@dataclass
class JoinStats:
    joined: int = 0
    defaulted: int = 0
    expired: int = 0
    retried: int = 0

    def __iadd__(self, other: JoinStats) -> JoinStats:
        self.joined += other.joined
        self.defaulted += other.defaulted
        self.expired += other.expired
        self.retried += other.retried
        return self


class Joiner:
    """Joins due events in batches.

    Parameters
    ----------
    storage
        Where the API workers log (the Redis storage).
    config
        The store config (reward weights, stream length).
    grace
        Seconds to wait past an event's window close before joining it, so a
        worker whose clock runs slightly behind cannot accept a reward after
        the join read the rewards (the join re-checks anyway).
    batch
        Due events read per round trip.
    clock
        Where "now" comes from when :meth:`run_once` is not told.
    writer_stale, writer_hold
        A worker's heartbeat older than ``writer_stale`` seconds holds the
        join at its last beat, for at most ``writer_hold`` seconds (counted
        from when it went stale, and from when Redis last came back to this
        learner; the workers' retry backoff, 5 s, fits twice in the default).
    """

    def __init__(
        self, storage: JoinQueue, config: StoreConfig, grace: float = 2.0, batch: int = 500,
        clock: Clock = SYSTEM_CLOCK, writer_stale: float = 3.0, writer_hold: float = 12.0,
    ):  # fmt: skip
        self.storage = storage
        self.config = config
        self.grace = grace
        self.batch = batch
        self.clock = clock
        self.writer_stale = writer_stale
        self.writer_hold = writer_hold
        self._reachable_since: float | None = None  # monotonic: when Redis last started answering this learner

    def run_once(self, now: float | None = None) -> JoinStats:
        """Join every event due at ``now``; returns what it did."""
        now = self.clock.time() if now is None else now
        try:
            return self._run(now)
        except STORAGE_ERRORS:
            self._reachable_since = None  # Redis away: the hold counts again from its return
            raise

    def _run(self, now: float) -> JoinStats:
        stats = JoinStats()
        cutoff = min(now - self.grace, self._writers_cutoff())
        while True:
            due = self.storage.due(cutoff, self.batch)
            for event_id in due:
                stats += self._join(event_id, now)
            if len(due) < self.batch:
                break
        metrics.LEARNER_LAG.set(self.storage.due_length())
        oldest = self.storage.oldest_due()
        # Past its window plus the grace the joiner waits: 0 while the learner keeps up.
        metrics.LEARNER_LAG_SECONDS.set(0.0 if oldest is None else max(0.0, now - self.grace - oldest))
        metrics.LEARNER_LAST_RUN.set(time.time())
        return stats

    def _writers_cutoff(self) -> float:
        """The latest window close the join may take: the oldest last beat of a silent worker worth waiting for."""
        beats = self.storage.writers()
        if self._reachable_since is None:
            self._reachable_since = time.monotonic()
        reachable_for = time.monotonic() - self._reachable_since
        cutoff = float("inf")
        waiting = 0
        for writer, (clean_through, age) in beats.items():
            if age <= self.writer_stale:
                continue
            if age - self.writer_stale < self.writer_hold or reachable_for < self.writer_hold:
                cutoff = min(cutoff, clean_through)
                waiting += 1
                continue
            self.storage.forget_writer(writer)
            log.warning("API worker %s silent for %.0fs: taken for gone; the join no longer waits for it", writer,
                        age)  # fmt: skip
        metrics.JOIN_WAITING_WRITERS.set(waiting)
        return cutoff

    def _join(self, event_id: str, now: float) -> JoinStats:
        stats = JoinStats()
        for _ in range(5):
            try:
                pending = self.storage.pending(event_id)
            except (ValueError, zlib.error) as exc:
                # Unreadable (its deflate dictionary lost with a Redis restarted without its data): nothing to
                # learn from; say so and drop it rather than retry it forever.
                self.storage.drop_due(event_id)
                log.error("event %s unreadable, dropped: %s", event_id, exc)
                metrics.STORAGE_ERRORS.labels("unreadable_event").inc()
                stats.expired += 1
                return stats
            if pending is None:
                # The event hash expired before anybody joined it (a learner down for longer
                # than the retention): nothing is left to learn from; say so and drop it.
                self.storage.drop_due(event_id)
                log.warning("event %s expired before it was joined", event_id)
                stats.expired += 1
                return stats
            records = joined_records(pending.event, pending.rewards, self.config.reward, joined_at=now)
            committed = self.storage.commit_join(pending, records, self.config.service.joined_log_max_events)
            if committed is None:
                stats.retried += 1
                continue
            if committed:
                for record in records:
                    slot, tier = record["slot"], record["tier"]
                    outcome = "defaulted" if record["defaulted"] else "joined"
                    if record.get("active") is False:  # deferred and never activated: kept, not learned from
                        metrics.JOIN_OUTCOMES.labels("inactive").inc()
                        stats.defaulted += 1
                        continue
                    metrics.JOIN_OUTCOMES.labels(outcome).inc()
                    metrics.observe_joined_reward(slot, tier, record["reward"])
                    if outcome == "defaulted":
                        stats.defaulted += 1
                    else:
                        stats.joined += 1
            return stats
        log.warning("event %s kept changing while being joined; will retry next pass", event_id)
        return stats
