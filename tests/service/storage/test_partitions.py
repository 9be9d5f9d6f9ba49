"""The partitioned key layout (what a Redis Cluster needs): hash tags, cursors over several joined streams."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
