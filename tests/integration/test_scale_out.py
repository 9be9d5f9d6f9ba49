"""Two API servers and two learners on one Redis: ranks on one, rewards on the other; the ladder leader killed.

Each `storefront serve` (two gunicorn workers and a learner) runs on its own folder against one redis-server,
under one key prefix. Shoppers rank on A and post their rewards to B. Both learners join (the join is atomic,
so each decision is joined once whoever does it); one holds the ladder lease and trains the gradient row.
Half-way the leader is SIGKILLed: the other takes the lease within its TTL and goes on from the checkpoint, so
the gradient learner ends having learned every joined record of its slot exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import yaml

from bandit.config import load_config
from service.storage import RedisStorage
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import free_port, start_service, stop_service
from tests.integration.test_faults import metric, start_redis
from tests.support import keyed_session

pytestmark = pytest.mark.integration

PREFIX = "scale:"
LEASE_TTL = 10.0  # the ladder runner's default


def test_two_servers_two_learners_one_redis(tmp_path: Path) -> None:
    port = free_port()
    redis_process = start_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}/0"
    config = yaml.safe_load(STORE_CONFIG.read_text())
    config["slots"][1]["tier"] = "gradient"  # row-1 learns online: the ladder runner's lease matters
    config_path = tmp_path / "store.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_service(tmp_path / "a", config_path, redis_url=url, prefix=PREFIX)
    b = start_service(tmp_path / "b", config_path, redis_url=url, prefix=PREFIX)
    storage = RedisStorage(redis.Redis.from_url(url), PREFIX)
    served: dict[str, list[str]] = {}
    answers: Counter[str] = Counter()
    rewarded: set[tuple[str, str]] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def shopper(seed: int) -> None:
        rng = random.Random(seed)
        on_a, on_b = keyed_session(), keyed_session()
        while not stop.is_set():
            page = on_a.post(f"{a.url}/v1/rank", json={"context": {"device": "quest"}}, timeout=10).json()
            slots = [s["slot"] for s in page["slots"] if s["item"] is not None]
            with lock:
                served[page["event_id"]] = slots
            if rng.random() < 0.5:
                slot = rng.choice(slots)
                body = {"event_id": page["event_id"], "slot": slot, "event": "click"}
                answer = on_b.post(f"{b.url}/v1/reward", json=body, timeout=10)
                with lock:
                    answers[answer.json().get("status", str(answer.status_code))] += 1
                    rewarded.add((page["event_id"], slot))
            time.sleep(0.01)

    threads = [threading.Thread(target=shopper, args=(seed,)) for seed in range(3)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while storage.lease_holder("ladder:row-1") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        holder = storage.lease_holder("ladder:row-1")
        assert holder is not None, "no learner took the ladder lease"
        time.sleep(4)
        leader_pid = int(holder.split(":")[1])
        os.kill(leader_pid, signal.SIGKILL)  # its serve restarts a learner, which finds the lease taken
        killed_at = time.monotonic()
        deadline = killed_at + LEASE_TTL + 15
        while time.monotonic() < deadline:
            now_holder = storage.lease_holder("ladder:row-1")
            if now_holder is not None and now_holder != holder:
                break
            time.sleep(0.2)
        took_over = time.monotonic() - killed_at
        assert storage.lease_holder("ladder:row-1") not in (None, holder)
        assert took_over <= LEASE_TTL + 3, f"the lease was taken over after {took_over:.1f}s"
        time.sleep(4)
        stop.set()
        for thread in threads:
            thread.join()

        assert set(answers) <= {"accepted", "queued"}, answers
        expected = {(eid, slot) for eid, slots in served.items() for slot in slots}
        records = b.export_until(tmp_path / "joined.jsonl", expected, timeout=60)
        joined = Counter((r["event_id"], r["slot"]) for r in records)
        assert set(joined) == expected and max(joined.values()) == 1
        assert rewarded <= {(r["event_id"], r["slot"]) for r in records if r["reward"] > 0}

        # The leader learns every joined row-1 record exactly once, across the takeover (its checkpoint): it learns
        # in batches, so what it has learned is the records up to the last full batch — never more (learned
        # twice), never a batch less (lost).
        row = sum(1 for r in records if r["slot"] == "row-1")
        batch = load_config(config_path).slots[1].gradient.batch
        deadline = time.monotonic() + 30
        each = [0.0, 0.0]
        while time.monotonic() < deadline:
            each = [metric(s.url, 'storefront_gradient_learned_records{slot="row-1"}') for s in (a, b)]
            if max(each) > row - batch:
                break
            time.sleep(0.5)
        learned = max(each)
        assert row - batch < learned <= row and learned % batch == 0, (each, row, batch)
        print(f"\nscale-out: {len(expected)} decisions, rewards {dict(answers)}, takeover after {took_over:.1f}s")
    finally:
        stop.set()
        stop_service(a)
        stop_service(b)
        redis_process.terminate()
        redis_process.wait(10)
