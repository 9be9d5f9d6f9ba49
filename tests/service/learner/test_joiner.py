"""The join on a real Redis: exactly once, nothing accepted is lost, late is late."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bandit.config import load_config
from bandit.page import PageFiller
from service.http.ids import new_event_id
from service.learner.joiner import Joiner
from service.storage import RedisStorage
from tests.conftest import STORE_CONFIG

CONFIG = load_config(STORE_CONFIG)
WINDOW = CONFIG.reward.window_seconds


@pytest.fixture
def storage(any_storage: RedisStorage) -> RedisStorage:
    """Every test here on the single-Redis key layout and on the partitioned one (Redis Cluster's)."""
    return any_storage


def log_page(storage: RedisStorage, now: float, context: dict | None = None) -> str:
    event_id = new_event_id(now)
    ctx, problems = CONFIG.context.normalise(context or {"device": "quest"})
    assert not problems
    page = PageFiller(CONFIG).fill(ctx, event_id)
    event = {
        "event_id": event_id, "ts": now, "window_close": now + WINDOW, "config_version": CONFIG.version,
        "context": ctx, "decisions": [d.to_dict() for d in page.decisions],
    }  # fmt: skip
    storage.log_event(event, WINDOW + 60)
    return event_id


def test_reward_outcomes(storage: RedisStorage) -> None:
    now = 1_000_000.0
    event_id = log_page(storage, now)
    assert storage.add_reward(event_id, "hero", "click", {}, now + 1, 60) == "accepted:rules"
    assert storage.add_reward(event_id, "hero", "click", {}, now + 1, 60) == "duplicate"
    assert storage.add_reward(event_id, "hero", "reward", 1.0, now + 1, 60) == "accepted:rules"
    assert storage.add_reward(event_id, "hero", "reward", 2.0, now + 1, 60) == "accepted:rules"  # last wins
    assert storage.add_reward(event_id, "nope", "click", {}, now + 1, 60) == "unknown_slot"
    assert storage.add_reward(event_id, "hero", "add_to_cart", {}, now + WINDOW + 0.001, 60) == "late"
    assert storage.add_reward(new_event_id(now), "hero", "click", {}, now + 1, 60) == "missing"
    pending = storage.pending(event_id)
    assert pending is not None
    assert pending.rewards == {"hero": {"click": {}, "reward": 2.0}}
    assert pending.version == "3"


def test_join_once_with_rewards_and_defaults(storage: RedisStorage) -> None:
    now = 2_000_000.0
    rewarded = log_page(storage, now)
    quiet = log_page(storage, now)
    storage.add_reward(rewarded, "hero", "purchase", {"revenue": 10.0}, now + 1, 60)
    joiner = Joiner(storage, CONFIG, grace=0.0)
    assert joiner.run_once(now + WINDOW - 0.1).joined == 0  # not due yet
    stats = joiner.run_once(now + WINDOW + 0.1)
    assert (stats.joined, stats.defaulted) == (1, 5)
    assert joiner.run_once(now + WINDOW + 10).joined == 0  # nothing twice
    records = [r for _, r in storage.joined()]
    assert len(records) == 6
    hero = next(r for r in records if r["event_id"] == rewarded and r["slot"] == "hero")
    assert hero["reward"] == pytest.approx(5 + 0.1 * 10) and hero["outcomes"] == ["purchase"]
    assert all(r["defaulted"] and r["reward"] == 0 for r in records if r["event_id"] == quiet)
    counts = storage.counts()
    assert counts["joined:hero"] == 2 and counts["defaulted:hero"] == 1 and counts["rewards:hero"] == 1
    # After the join the event is gone: a reward for it is no longer accepted.
    assert storage.add_reward(rewarded, "hero", "click", {}, now + 1, 60) == "missing"


def test_concurrent_learners_join_each_event_exactly_once(storage: RedisStorage) -> None:
    now = 3_000_000.0
    ids = [log_page(storage, now + i * 0.001) for i in range(300)]
    for event_id in ids[::3]:
        storage.add_reward(event_id, "row-1", "click", {}, now + 1, 60)
    joiners = [Joiner(storage, CONFIG, grace=0.0, batch=7) for _ in range(4)]
    threads = [threading.Thread(target=j.run_once, args=(now + WINDOW + 5,)) for j in joiners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [r for _, r in storage.joined()]
    keys = [(r["event_id"], r["slot"]) for r in records]
    assert len(keys) == len(set(keys)) == 300 * 3
    assert sum(r["reward"] for r in records) == 100  # every accepted click joined once
    assert storage.due_length() == 0


def test_a_reward_landing_between_read_and_commit_forces_a_reread(storage: RedisStorage) -> None:
    now = 4_000_000.0
    event_id = log_page(storage, now)
    stale = storage.pending(event_id)
    assert stale is not None
    # A worker whose clock runs behind accepts a reward after the learner read the event.
    assert storage.add_reward(event_id, "hero", "click", {}, now + 1, 60) == "accepted:rules"
    assert storage.commit_join(stale, [], 1000) is None
    assert storage.due_length() == 1
    stats = Joiner(storage, CONFIG, grace=0.0).run_once(now + WINDOW + 1)
    assert stats.joined == 1 and stats.retried == 0
    assert [r["reward"] for _, r in storage.joined() if r["slot"] == "hero"] == [1.0]


def test_event_expired_before_join_is_dropped_and_counted(storage: RedisStorage) -> None:
    now = 5_000_000.0
    event_id = log_page(storage, now)
    storage.client.delete(storage.event_keys(event_id)[0])  # as if its TTL ran out while no learner ran
    stats = Joiner(storage, CONFIG, grace=0.0).run_once(now + WINDOW + 1)
    assert stats.expired == 1 and storage.due_length() == 0 and storage.joined_length() == 0


def test_the_join_waits_for_a_silent_worker_until_it_beats_again(storage: RedisStorage) -> None:
    """A worker away from Redis holds rewards in its spool: pages closing after its last beat wait for it."""
    now = time.time()
    before, after = log_page(storage, now - WINDOW - 20), log_page(storage, now - WINDOW - 5)
    storage.beat_writer("w-silent", now - 10)  # clean through 10 s ago (its window-closing pages are held)
    storage.beat_writer("w-fresh", now)
    joiner = Joiner(storage, CONFIG, grace=0.0, writer_stale=0.2, writer_hold=30.0)
    time.sleep(0.3)  # both beats are stale now; 'w-fresh' beats again below
    storage.beat_writer("w-fresh", time.time())
    joiner.run_once()
    assert joined_ids(storage) == {before}  # 'after' closed past the silent worker's beat
    assert metric_value("storefront_join_waiting_writers") == 1
    # It replays what it held, then beats: the join goes on.
    storage.add_reward(after, "hero", "click", {}, now - WINDOW - 4, 60)
    storage.beat_writer("w-silent", time.time())
    joiner.run_once()
    assert joined_ids(storage) == {before, after}
    hero = next(r for _, r in storage.joined() if r["event_id"] == after and r["slot"] == "hero")
    assert hero["outcomes"] == ["click"]


def test_a_worker_silent_past_the_hold_is_forgotten(storage: RedisStorage, caplog: pytest.LogCaptureFixture) -> None:
    now = time.time()
    event_id = log_page(storage, now - WINDOW - 5)
    storage.beat_writer("w-dead", now - 30)
    joiner = Joiner(storage, CONFIG, grace=0.0, writer_stale=0.1, writer_hold=0.3)
    time.sleep(0.15)
    joiner.run_once()  # Redis has answered this learner for less than the hold: still waiting
    assert joined_ids(storage) == set()
    time.sleep(0.35)
    joiner.run_once()
    assert joined_ids(storage) == {event_id}
    assert "w-dead" not in storage.writers()
    assert "taken for gone" in caplog.text


def joined_ids(storage: RedisStorage) -> set[str]:
    return {r["event_id"] for _, r in storage.joined()}


def metric_value(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None
    return value


def test_joined_stream_pages_through_everything(storage: RedisStorage) -> None:
    now = 6_000_000.0
    for i in range(25):
        log_page(storage, now + i)
    Joiner(storage, CONFIG, grace=0.0).run_once(now + 100)
    all_ids = [entry_id for entry_id, _ in storage.joined(batch=4)]
    assert len(all_ids) == 75 == len(set(all_ids))
    after = [entry_id for entry_id, _ in storage.joined(start=f"({all_ids[8]}", batch=4)]
    assert after == all_ids[9:]  # each id is the cursor to go on from, whatever the key layout


def test_a_slot_starting_on_the_gradient_tier_gets_a_ladder_runner_even_with_escalation_off(tmp_path: Path) -> None:
    import yaml

    from bandit.config import load_config
    from service.learner.loop import wants_ladders
    from tests.conftest import STORE_CONFIG

    assert not wants_ladders(load_config(STORE_CONFIG))  # every slot on rules, escalation off
    raw = yaml.safe_load(STORE_CONFIG.read_text())
    raw["slots"][1]["tier"] = "gradient"
    (tmp_path / "store.yaml").write_text(yaml.safe_dump(raw))
    assert wants_ladders(load_config(tmp_path / "store.yaml"))
