"""The write-behind against a real Redis: batches, the spool across an outage, queued rewards, adoption, bounds.

An outage is a storage whose Redis does not answer (a closed port): the writer is pointed at it, then back.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from service.http.ids import new_event_id
from service.storage import RedisStorage
from service.storage.protocols import LATE
from service.storage.writebehind import _HOST as HOST
from service.storage.writebehind import QUEUED, Spool, WriteBehind
from tests.support import wait_for

WINDOW = 60.0
TTL = WINDOW + 3600


def page(now: float, slot: str = "hero", tier: str = "rules") -> dict[str, Any]:
    event_id = new_event_id(now)
    decision = {"slot": slot, "position": 0, "item": "a", "propensity": 0.8, "candidates": ["a", "b"],
                "pmf": [0.8, 0.2], "tier": tier, "policy_version": "v", "explanation": "default"}  # fmt: skip
    return {"event_id": event_id, "ts": now, "window_close": now + WINDOW, "config_version": "v",
            "context": {"device": "quest"}, "decisions": [decision]}  # fmt: skip


def away() -> RedisStorage:
    return RedisStorage.from_url("redis://127.0.0.1:1/0", "x:", socket_connect_timeout=0.2, socket_timeout=0.2)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def logged(storage: RedisStorage, event_id: str) -> bool:
    return bool(storage.client.exists(f"{storage.prefix}ev:{event_id}"))


def test_pages_are_written_in_batches_by_the_thread(storage: RedisStorage) -> None:
    writer = WriteBehind(storage, flush_interval=0.005, max_batch=100)
    try:
        pages = [page(time.time()) for _ in range(1000)]
        for p in pages:
            assert writer.log_event(p, TTL) is True
        deadline = time.monotonic() + 10
        while storage.due_length() < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert storage.due_length() == 1000
        assert all(logged(storage, p["event_id"]) for p in pages[::97])
    finally:
        writer.close()


def test_a_worker_beats_while_redis_answers_and_takes_its_beat_out_on_close(storage: RedisStorage) -> None:
    writer = WriteBehind(storage, flush_interval=0.005, beat_interval=0.05)
    try:
        assert wait_for(lambda: writer.writer_id in storage.writers(), 5)
        first, _ = storage.writers()[writer.writer_id]
        time.sleep(0.2)
        again, age = storage.writers()[writer.writer_id]
        assert again > first and age < 0.2  # it keeps beating, and Redis stamps each beat
    finally:
        writer.close()
    assert writer.writer_id not in storage.writers()  # nothing of it outside Redis: the join need not wait


def test_a_worker_away_from_redis_stops_beating_until_it_has_replayed(storage: RedisStorage, tmp_path: Path) -> None:
    writer = WriteBehind(storage, Spool(tmp_path, 1 << 20), flush_interval=0.005, beat_interval=0.05, retry_max=0.2)
    try:
        assert wait_for(lambda: writer.writer_id in storage.writers(), 5)
        writer.storage = away()  # Redis stops answering
        reward_page = page(time.time())
        writer.log_event(reward_page, TTL)
        assert wait_for(lambda: writer.degraded, 5)
        writer.add_reward(reward_page["event_id"], "hero", "click", {}, time.time(), TTL, time.time() + WINDOW)
        silent_since, _ = storage.writers()[writer.writer_id]
        time.sleep(0.4)
        assert storage.writers()[writer.writer_id][0] == silent_since  # no beat while away
        writer.storage = storage  # back: it replays the page and the reward, then beats
        assert wait_for(lambda: storage.writers()[writer.writer_id][0] > silent_since, 5)
        assert b"hero|click" in storage.client.hgetall(f"{storage.prefix}rw:{reward_page['event_id']}")
    finally:
        writer.close()


def test_close_flushes_what_waits(storage: RedisStorage) -> None:
    writer = WriteBehind(storage, flush_interval=10.0)  # the thread would wait ten seconds
    pages = [page(time.time()) for _ in range(5)]
    for p in pages:
        writer.log_event(p, TTL)
    writer.close()
    assert storage.due_length() == 5


def test_an_outage_is_spooled_and_replayed_in_order_with_the_rewards(storage: RedisStorage, tmp_path: Path) -> None:
    clock = Clock()
    writer = WriteBehind(storage, Spool(tmp_path, 1 << 20), flush_interval=0, replay_grace=30.0, clock=clock)
    before = page(clock.now)
    assert writer.log_event(before, TTL)
    writer.storage = away()  # Redis stops answering
    during = [page(clock.now) for _ in range(3)]
    assert all(writer.log_event(p, TTL) for p in during)  # kept: spooled
    assert writer.degraded and writer.ready()["spool_bytes"] > 0
    lines = [json.loads(x) for x in (tmp_path / f"spool-{HOST}-{os.getpid()}.jsonl").read_text().splitlines()]
    assert [x["e"]["event_id"] for x in lines] == [p["event_id"] for p in during]
    result = writer.add_reward(during[0]["event_id"], "hero", "click", {}, clock.now, TTL, clock.now + WINDOW)
    assert result == QUEUED
    result = writer.add_reward(before["event_id"], "hero", "click", {}, clock.now, TTL, clock.now + WINDOW)
    assert result == QUEUED

    writer.storage = storage  # Redis is back
    clock.now += 1
    after = page(clock.now)
    assert writer.log_event(after, TTL)
    assert not writer.degraded and writer.ready()["spool_bytes"] == 0
    for p in (*during, after):
        assert logged(storage, p["event_id"])
    # A replayed page waits for the join at least replay_grace, so the rewards spooled elsewhere land first.
    score = storage.client.zscore(f"{storage.prefix}due", during[0]["event_id"])
    assert score >= clock.now + 30.0 - 1
    for p in (during[0], before):
        rewards = storage.client.hgetall(f"{storage.prefix}rw:{p['event_id']}")
        assert b"hero|click" in rewards


def test_while_redis_is_away_a_reward_after_its_window_is_refused_at_once_not_queued(tmp_path: Path) -> None:
    """Queued, it could only be refused as late when replayed — after its client was told 202."""
    clock = Clock()
    writer = WriteBehind(away(), Spool(tmp_path, 1 << 20), flush_interval=0, clock=clock)
    p = page(clock.now - WINDOW - 1)
    assert writer.add_reward(p["event_id"], "hero", "click", {}, clock.now, TTL, p["window_close"]) == LATE
    fresh = page(clock.now)
    assert writer.add_reward(fresh["event_id"], "hero", "click", {}, clock.now, TTL, fresh["window_close"]) == QUEUED
    spooled = [json.loads(x) for x in (tmp_path / f"spool-{HOST}-{os.getpid()}.jsonl").read_text().splitlines()]
    assert [x["id"] for x in spooled] == [fresh["event_id"]]


def test_a_reward_before_its_page_waits_for_it(storage: RedisStorage) -> None:
    clock = Clock()
    writer = WriteBehind(storage, flush_interval=0, clock=clock)
    p = page(clock.now)  # ranked by another worker, still in its buffer
    assert writer.add_reward(p["event_id"], "hero", "click", {}, clock.now, TTL, clock.now + WINDOW) == QUEUED
    storage.log_events([(p, TTL)])  # the other worker's flush
    writer.flush()
    assert b"hero|click" in storage.client.hgetall(f"{storage.prefix}rw:{p['event_id']}")
    assert writer.ready()["rewards_waiting"] == 0


def test_a_reward_whose_page_never_comes_is_dropped_after_the_horizon(storage: RedisStorage) -> None:
    clock = Clock()
    writer = WriteBehind(storage, flush_interval=0, pending_horizon=5.0, clock=clock)
    p = page(clock.now)
    assert writer.add_reward(p["event_id"], "hero", "click", {}, clock.now, TTL, clock.now + WINDOW) == QUEUED
    clock.now += WINDOW + 1
    writer.flush()
    assert writer.ready()["rewards_waiting"] == 1  # still within the horizon
    clock.now += 5
    writer.flush()
    assert writer.ready()["rewards_waiting"] == 0


def test_replaying_a_page_twice_logs_it_once(storage: RedisStorage) -> None:
    p = page(time.time())
    storage.log_events([(p, TTL)])
    storage.log_events([(p, TTL)], min_close=time.time() + 100)
    assert storage.due_length() == 1
    assert storage.counts() == {"decisions:hero:rules": 1}
    assert storage.client.zscore(f"{storage.prefix}due", p["event_id"]) == pytest.approx(p["window_close"])


def test_the_spool_of_a_dead_worker_is_adopted(storage: RedisStorage, tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the default pid_max of 4194304: no such process
    orphan = Spool(tmp_path, 1 << 20, name=f"spool-{HOST}-{dead}.jsonl")
    elsewhere = Spool(tmp_path, 1 << 20, name=f"spool-another-host-{dead}.jsonl")  # its pids are not ours
    elsewhere.append([{"t": "d", "e": page(time.time()), "ttl": TTL}])
    pages = [page(time.time()) for _ in range(3)]
    orphan.append([{"t": "d", "e": p, "ttl": TTL} for p in pages])
    writer = WriteBehind(storage, Spool(tmp_path, 1 << 20), flush_interval=0)
    assert not (tmp_path / f"spool-{HOST}-{dead}.jsonl").exists()
    assert (tmp_path / f"spool-another-host-{dead}.jsonl").exists()
    writer.log_event(page(time.time()), TTL)  # the next write replays the backlog first
    assert all(logged(storage, p["event_id"]) for p in pages)
    assert not writer.degraded


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are recognised through Linux's /proc")
def test_the_spool_of_an_exited_worker_not_yet_reaped_is_adopted(storage: RedisStorage, tmp_path: Path) -> None:
    """A zombie (exited, not yet reaped: what a killed worker is until init reaps it) answers kill(pid, 0)."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        stat = Path(f"/proc/{child}/stat")
        assert wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=5)
        os.kill(child, 0)  # the pid still answers
        orphan = Spool(tmp_path, 1 << 20, name=f"spool-{HOST}-{child}.jsonl")
        alive = Spool(tmp_path, 1 << 20, name=f"spool-{HOST}-{os.getppid()}.jsonl")  # a live process's: left alone
        pages = [page(time.time()) for _ in range(2)]
        orphan.append([{"t": "d", "e": p, "ttl": TTL} for p in pages])
        alive.append([{"t": "d", "e": page(time.time()), "ttl": TTL}])
        writer = WriteBehind(storage, Spool(tmp_path, 1 << 20), flush_interval=0)
        assert not (tmp_path / f"spool-{HOST}-{child}.jsonl").exists()
        assert (tmp_path / f"spool-{HOST}-{os.getppid()}.jsonl").exists()
        writer.log_event(page(time.time()), TTL)
        assert all(logged(storage, p["event_id"]) for p in pages)
    finally:
        os.waitpid(child, 0)


def test_a_full_spool_drops_and_says_so(storage: RedisStorage, tmp_path: Path) -> None:
    writer = WriteBehind(away(), Spool(tmp_path, 2000), flush_interval=0)
    kept = [writer.log_event(page(time.time()), TTL) for _ in range(10)]
    assert kept[0] is True and kept[-1] is False
    assert (tmp_path / f"spool-{HOST}-{os.getpid()}.jsonl").stat().st_size <= 2000


def test_without_a_spool_an_outage_loses_pages_and_refuses_rewards() -> None:
    import redis

    writer = WriteBehind(away(), None, flush_interval=0)
    p = page(time.time())
    assert writer.log_event(p, TTL) is False
    with pytest.raises(redis.ConnectionError):
        writer.add_reward(p["event_id"], "hero", "click", {}, time.time(), TTL, time.time() + WINDOW)


def test_a_page_is_kept_deflated_and_read_back_as_it_was(storage: RedisStorage, redis_url: str) -> None:
    from service.storage.codec import event_json

    pages = [page(time.time()) for _ in range(50)]
    storage.log_events([(p, TTL) for p in pages])
    raws = [storage.client.hget(f"{storage.prefix}ev:{p['event_id']}", "d") for p in pages]
    assert all(raw[:1] == b"Z" for raw in raws)
    assert sum(map(len, raws[1:])) / 49 < 0.25 * len(event_json(pages[1]))  # against the first page's JSON
    # Another process (the learner) reads them with the dictionary from Redis.
    reader = RedisStorage.from_url(redis_url, storage.prefix)
    assert [reader.unpack_event(raw) for raw in raws] == pages
    assert reader.unpack_event(event_json(pages[0]).encode()) == pages[0]  # plain JSON of an older release
    pending = reader.pending(pages[3]["event_id"])
    assert pending is not None and pending.event == pages[3]


def test_the_dictionary_travels_with_the_first_pages_and_again_after_a_failure(storage: RedisStorage) -> None:
    pages = [page(time.time()) for _ in range(3)]
    storage.log_events([(pages[0], TTL)])
    raw = storage.client.hget(f"{storage.prefix}ev:{pages[0]['event_id']}", "d")
    key = f"{storage.prefix}zdict:{raw[1:9].decode()}"
    assert storage.client.exists(key)
    storage.client.delete(key)  # a Redis that came back without it
    script = storage._log

    def refused(**_: Any) -> None:
        raise redis.ConnectionError("Redis went away")

    storage._log = refused  # one failed write (the connection dropped)
    with pytest.raises(redis.ConnectionError):
        storage.log_events([(pages[1], TTL)])
    storage._log = script
    storage.log_events([(pages[2], TTL)])
    assert storage.client.exists(key)  # sent again with the next write


def test_an_unreadable_page_is_dropped_and_counted_not_retried_forever(storage: RedisStorage) -> None:
    """Its dictionary lost (a Redis restarted without its data): the join drops it once, with a log line."""
    from bandit.config import load_config
    from service.learner.joiner import Joiner
    from tests.conftest import STORE_CONFIG

    p = page(time.time() - 2 * WINDOW)
    p["window_close"] = time.time() - WINDOW
    storage.log_events([(p, TTL)])
    for key in storage.client.scan_iter(match=f"{storage.prefix}zdict:*"):
        storage.client.delete(key)
    reader = RedisStorage(storage.client, storage.prefix)  # another process: the dictionary only in Redis
    stats = Joiner(reader, load_config(STORE_CONFIG), grace=0).run_once()
    assert stats.expired == 1 and storage.due_length() == 0


class _ReplayFirst:
    """The writer's lock, taken by the writer thread's replay just before the request thread gets it."""

    def __init__(self, writer: WriteBehind, clock: Clock) -> None:
        self.writer, self.clock, self.lock, self.done = writer, clock, writer._lock, False

    def __enter__(self) -> None:
        self.lock.acquire()
        if not self.done and self.writer.degraded:
            self.done = True
            self.writer._replay(self.clock.now)  # Redis is back: the spool is replayed, degraded cleared

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_reward_that_races_the_replay_is_stored_not_left_in_the_spool(storage: RedisStorage, tmp_path: Path) -> None:
    """The request saw the worker degraded; by the time it holds the lock the writer has replayed: spooled now, the
    reward would wait in the spool until the next outage (the fault test's rare lost reward)."""
    clock = Clock()
    writer = WriteBehind(storage, Spool(tmp_path, 1 << 20), flush_interval=0, replay_grace=30.0, clock=clock)
    p = page(clock.now)
    assert writer.log_event(p, TTL)
    writer.degraded = True  # the outage just ended: the worker has not replayed yet
    writer._lock = _ReplayFirst(writer, clock)  # type: ignore[assignment]
    result = writer.add_reward(p["event_id"], "hero", "click", {}, clock.now, TTL, clock.now + WINDOW)
    assert result.startswith("accepted"), result
    assert not writer.degraded and writer.ready()["spool_bytes"] == 0
    assert b"hero|click" in storage.client.hgetall(f"{storage.prefix}rw:{p['event_id']}")
