"""The partitioned key layout (what a Redis Cluster needs): hash tags, cursors over several joined streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from service.learner.joiner import Joiner
from service.storage import RedisStorage
from service.storage.redis_storage import layout_from_env
from tests.conftest import storage_for
from tests.service.learner.test_joiner import CONFIG, log_page


@pytest.fixture
def four(redis_url: str, prefix: str) -> Iterator[RedisStorage]:
    yield from storage_for(redis_url, prefix, 4)


def joined_pages(storage: RedisStorage, n: int, now: float) -> None:
    for i in range(n):
        log_page(storage, now + i * 0.01)
    Joiner(storage, CONFIG, grace=0.0).run_once(now + 1000)


def test_every_key_of_an_event_is_in_its_partitions_hash_tag(four: RedisStorage) -> None:
    ids = [log_page(four, 7_000_000.0 + i) for i in range(40)]
    assert len({four.partition_of(i) for i in ids}) == 4
    for event_id in ids:
        event_key, reward_key = four.event_keys(event_id)
        tag = f"{{{four.prefix}{four.partition_of(event_id)}}}:"
        assert event_key.startswith(tag) and reward_key.startswith(tag) and four.client.exists(event_key)
    assert four.due_length() == 40 and four.counts()["decisions:hero:rules"] == 40


def test_cursors_page_forwards_and_backwards_through_every_partition_once(four: RedisStorage) -> None:
    joined_pages(four, 30, 8_000_000.0)
    everything = list(four.joined(batch=1000))
    assert len(everything) == 90 == len({(r["event_id"], r["slot"]) for _, r in everything})
    forward, cursor = [], None
    while batch := four.joined_after(cursor, 7):
        forward += batch
        cursor = batch[-1][0]
    assert [r for _, r in forward] == [r for _, r in everything]
    assert four.joined_after(cursor, 7) == []  # the last cursor: everything read
    backward, end, inclusive = [], cursor, True
    while batch := four.joined_before(end, 5, inclusive=inclusive):
        backward += batch
        end, inclusive = batch[-1][0], False
    assert [r for _, r in backward] == [r for _, r in reversed(everything)]
    # From a cursor part-way: exactly what comes after it.
    middle = forward[40][0]
    assert [r for _, r in four.joined_after(middle, 1000)] == [r for _, r in forward[41:]]
    assert [r for _, r in four.joined_before(middle, 1000)] == [r for _, r in reversed(forward[:41])]


def test_a_cursor_of_another_layout_is_refused_by_name(four: RedisStorage) -> None:
    with pytest.raises(ValueError, match="STOREFRONT_REDIS_PARTITIONS"):
        four.joined_after("1700000000000-0", 10)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, (False, 1)), ({"STOREFRONT_REDIS_CLUSTER": "1"}, (True, 16)),
     ({"STOREFRONT_REDIS_CLUSTER": "yes", "STOREFRONT_REDIS_PARTITIONS": "3"}, (True, 3)),
     ({"STOREFRONT_REDIS_PARTITIONS": "8"}, (False, 8))],
)  # fmt: skip
def test_the_layout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                               expected: tuple[bool, int]) -> None:  # fmt: skip
    for name in ("STOREFRONT_REDIS_CLUSTER", "STOREFRONT_REDIS_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert layout_from_env() == expected


@pytest.mark.parametrize(("name", "value"), [("STOREFRONT_REDIS_CLUSTER", "maybe"),
                                              ("STOREFRONT_REDIS_PARTITIONS", "0"),
                                              ("STOREFRONT_REDIS_PARTITIONS", "lots")])  # fmt: skip
def test_a_layout_setting_not_understood_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                            value: str) -> None:  # fmt: skip
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        layout_from_env()


def test_a_batch_written_in_part_spools_only_the_pages_not_stored(four: RedisStorage, tmp_path: Path) -> None:
    """A cluster's node fails after other partitions took their pages: those must not be stored a second time
    by the replay (joined and deleted meanwhile, a page stored again would be joined twice)."""
    from service.storage.redis_storage import PartialWrite
    from service.storage.writebehind import Spool, WriteBehind
    from tests.service.storage.test_writebehind import TTL, page

    pages = [page(11_000_000.0 + i) for i in range(40)]
    real, calls = four._log, [0]

    def fail_third(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise redis.ConnectionError("node down")
        return real(*args, **kwargs)

    four._log = fail_third  # type: ignore[method-assign]
    with pytest.raises(PartialWrite) as caught:
        four.log_events([(p, TTL) for p in pages])
    stored = caught.value.stored
    assert 0 < len(stored) < len(pages) and all(four.client.exists(four.event_keys(e)[0]) for e in stored)

    # The write-behind's batch meets the same failure: what is in Redis is not spooled, the rest is.
    calls[0] = 0
    spool = Spool(tmp_path, 1 << 20)
    writer = WriteBehind(four, spool, flush_interval=0)
    batch = [page(12_000_000.0 + i) for i in range(40)]
    assert writer._write([(p, TTL) for p in batch])
    spooled = {entry["e"]["event_id"] for entry in spool.read()}
    in_redis = {p["event_id"] for p in batch if four.client.exists(four.event_keys(p["event_id"])[0])}
    assert spooled and in_redis and spooled.isdisjoint(in_redis)
    assert spooled | in_redis == {p["event_id"] for p in batch}


def test_the_cluster_clients_own_errors_are_an_outage_to_the_writer(four: RedisStorage, tmp_path: Path) -> None:
    """``RedisClusterException`` (e.g. slots not covered while a primary is down) is not a ``RedisError``."""
    from service.storage.writebehind import Spool, WriteBehind
    from tests.service.storage.test_writebehind import TTL, page

    def uncovered(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.SlotNotCoveredError("slot 1234 is not covered by the cluster")

    four._log = uncovered  # type: ignore[method-assign]
    spool = Spool(tmp_path, 1 << 20)
    writer = WriteBehind(four, spool, flush_interval=0)
    batch = [page(14_000_000.0 + i) for i in range(5)]
    assert writer._write([(p, TTL) for p in batch]) and writer.degraded
    assert {e["e"]["event_id"] for e in spool.read()} == {p["event_id"] for p in batch}
