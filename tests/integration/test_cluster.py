"""Redis Cluster: three primaries on loopback (redis-server in cluster mode), the storage and `storefront serve` on it.

Every Lua script touches one hash slot (an event's keys share its partition's tag, the ladder's keys the store's
control tag), so each runs on the node that owns it; the pages of a store spread over the nodes; the join, the
joined log's cursors and the ladder work partition by partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.learner.joiner import Joiner
from service.storage import LadderConflict, LadderWrite, LeaseLost, RedisStorage
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LocalCluster, start_cluster, start_service, stop_cluster, stop_service
from tests.service.learner.test_joiner import CONFIG, log_page
from tests.support import keyed_session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    stop_cluster(started)


@pytest.fixture
def storage(cluster: LocalCluster) -> Iterator[RedisStorage]:
    store = RedisStorage.from_url(cluster.url, f"ct:{uuid.uuid4().hex[:8]}:", cluster=True)
    yield store
    store.client.close()


def keys_per_node(cluster: LocalCluster, match: str) -> list[int]:
    return [len(list(redis.Redis(port=port).scan_iter(match=match, count=1000))) for port in cluster.ports]


def test_pages_spread_over_the_nodes_and_join_exactly_once(cluster: LocalCluster, storage: RedisStorage) -> None:
    now = 10_000_000.0
    ids = [log_page(storage, now + i * 0.01) for i in range(60)]
    assert storage.partitions == 16 and all(n > 0 for n in keys_per_node(cluster, f"*{storage.prefix}*:ev:*"))
    for event_id in ids[::2]:
        assert storage.add_reward(event_id, "hero", "click", {}, now + 1, 60) == "accepted:rules"
    assert storage.due_length() == 60 and storage.oldest_due() == pytest.approx(now + CONFIG.reward.window_seconds)
    joiners = [Joiner(storage, CONFIG, grace=0.0, batch=7) for _ in range(2)]
    stats = [j.run_once(now + 1000) for j in joiners]
    assert sum(s.joined for s in stats) == 30 and storage.due_length() == 0
    records = [r for _, r in storage.joined()]
    assert len(records) == 180 == len({(r["event_id"], r["slot"]) for r in records})
    assert sum(r["reward"] for r in records) == 30 and storage.counts()["joined:hero"] == 60
    # The ladder runner's cursors, forwards then backwards, over the 16 partitions' streams.
    forward, cursor = [], None
    while batch := storage.joined_after(cursor, 25):
        forward += batch
        cursor = batch[-1][0]
    assert [r for _, r in forward] == records
    assert [r for _, r in storage.joined_before(cursor, 1000)] == records[::-1]


def test_the_ladders_keys_share_one_slot_so_saves_stay_atomic_and_fenced(storage: RedisStorage) -> None:
    state = {"stage": "incumbent"}
    assert storage.acquire_lease("runner-a", 10)
    version = storage.save_ladders([LadderWrite("hero", state, 0, ({"transition": "started"},), {"w": 1})],
                                   cursor="0-1", lease_holder="runner-a")  # fmt: skip
    assert version == 1 and storage.ladder_version() == 1 and storage.ladder_cursor() == "0-1"
    assert storage.load_ladders(["hero"])["hero"].state == state and storage.load_checkpoints(["hero"]) == {
        "hero": {"w": 1}}  # fmt: skip
    with pytest.raises(LadderConflict):
        storage.save_ladders([LadderWrite("hero", state, 0)])
    with pytest.raises(LeaseLost):
        storage.save_ladders([LadderWrite("hero", state, 1)], lease_holder="runner-b")
    storage.report_health({"hero": 2})
    storage.report_health({"hero": 1})
    assert storage.drain_health() == {"hero": 3} and storage.drain_health() == {}
    storage.beat_writer("w1", 5.0)
    assert storage.writers()["w1"][0] == 5.0


def test_serve_on_the_cluster_ranks_rewards_joins_and_exports(cluster: LocalCluster, tmp_path: Path) -> None:
    live = start_service(tmp_path, STORE_CONFIG, redis_url=cluster.url, env_extra={"STOREFRONT_REDIS_CLUSTER": "1"})
    try:
        session = keyed_session()
        expected = set()
        for i in range(40):
            page = session.post(f"{live.url}/v1/rank", json={"context": {"device": "quest"}}, timeout=5).json()
            assert page["logged"] is True
            expected |= {(page["event_id"], s["slot"]) for s in page["slots"]}
            if i % 2 == 0:
                answer = session.post(f"{live.url}/v1/reward", timeout=5, json={
                    "event_id": page["event_id"], "slot": "hero", "event": "click"})  # fmt: skip
                assert answer.status_code == 202, answer.text
        records = live.export_until(tmp_path / "joined.jsonl", expected, timeout=60)
        assert {(r["event_id"], r["slot"]) for r in records} == expected and len(records) == len(expected)
        assert sum(r["reward"] for r in records) == 20
        assert sum(1 for n in keys_per_node(cluster, f"*{live.env['STOREFRONT_REDIS_PREFIX']}*:joined") if n) >= 2
        status = session.get(f"{live.url}/v1/slots", timeout=5).json()
        assert status["counts_available"] is True
        deadline = time.monotonic() + 10
        while session.get(f"{live.url}/readyz", timeout=5).json().get("status") != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop_service(live)


def test_a_primary_down_before_failover_spools_what_its_slots_would_have_taken(tmp_path: Path) -> None:
    """No replica to fail over to: the batch's partitions on the live primaries are stored, the dead one's fail
    (a connection error, or the cluster client's own errors, which are not RedisErrors); the write-behind takes
    it for an outage and spools exactly the pages that are not in Redis."""
    from service.storage.writebehind import Spool, WriteBehind
    from tests.service.storage.test_writebehind import TTL, page

    local = start_cluster(tmp_path / "cluster")
    try:
        storage = RedisStorage.from_url(local.url, "down:", cluster=True, socket_timeout=0.5,
                                        socket_connect_timeout=0.5)  # fmt: skip
        spool = Spool(tmp_path / "spool", 1 << 20)
        writer = WriteBehind(storage, spool, flush_interval=0)
        assert writer._write([(page(13_000_000.0), TTL)])  # the client knows the slot map
        local.processes[-1].kill()  # the last primary, with a third of the slots
        local.processes[-1].wait()
        batch = [page(13_000_001.0 + i) for i in range(60)]
        assert writer._write([(p, TTL) for p in batch])  # no exception escapes: stored or spooled
        assert writer.degraded
        spooled = {entry["e"]["event_id"] for entry in spool.read()}
        assert spooled and spooled <= {p["event_id"] for p in batch}
        live = [redis.Redis(port=port) for port in local.ports[:-1]]

        def on_a_live_node(event_id: str) -> bool:
            for node in live:
                try:
                    if node.exists(storage.event_keys(event_id)[0]):
                        return True
                except redis.exceptions.MovedError:  # another node's slot
                    continue
            return False

        stored = {p["event_id"] for p in batch if on_a_live_node(p["event_id"])}
        assert stored.isdisjoint(spooled) and stored | spooled == {p["event_id"] for p in batch}
    finally:
        stop_cluster(local)
