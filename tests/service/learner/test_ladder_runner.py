"""Escalation in the service, on a real Redis: workers follow saved ladder states, the runner learns once, admin API."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from bandit.config import StoreConfig, load_config
from bandit.escalation.learner import Learner
from bandit.escalation.state import SlotState
from bandit.policies.tree import SNAPSHOT_KIND, TreePolicy
from service.http.app import create_app
from service.http.ids import new_event_id
from service.http.runtime import ConfigHolder
from service.learner.joiner import Joiner
from service.learner.ladder_runner import LadderRunner, LadderRunners
from service.storage import LadderConflict, LadderWrite, LeaseLost, RedisStorage
from tests.conftest import STORE_CONFIG
from tests.support import BACKEND_KEY, TEST_SETTINGS, keyed, wait_for

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ESCALATION = """    escalation: {mode: MODE, min_events: 20, retrain_every: 30, train_window: 50, ramp: [0.5, 1.0],
                 ramp_events: 10, guardrail_min_events: 5, holdout: 0.1}
"""


@pytest.fixture
def storage(any_storage: RedisStorage) -> RedisStorage:
    """Every test here on the single-Redis key layout and on the partitioned one (Redis Cluster's)."""
    return any_storage


def ladder_config(tmp_path: Path, mode: str = "manual") -> Path:
    text = STORE_CONFIG.read_text()
    anchor = "  - name: hero\n    exploration: 0.2\n"
    assert anchor in text
    path = tmp_path / "store.yaml"
    path.write_text(text.replace(anchor, anchor + ESCALATION.replace("MODE", mode)))
    return path


def snapshot(config: StoreConfig, version: str = "tree-test00001", item: str = "c", kind: str = SNAPSHOT_KIND) -> dict:
    """A hand-written tree: German shoppers get ``item``, everyone else the hero's rules."""
    return {
        "kind": kind, "slot": "hero", "config_version": config.version, "version": version, "n": 400, "leaves": 2,
        "settings": {"max_depth": 1, "min_leaf": 5, "features": [], "top_items": 1, "weight_clip": 50.0},
        "meta": {}, "rules": [{"name": "leaf-1", "when": {"country": "DE"}, "items": [item]}], "default": ["a"],
    }  # fmt: skip


def state(config: StoreConfig, stage: str, **changes: Any) -> SlotState:
    tree = {"tier": "tree", "snapshot": snapshot(config)}
    rules = {"tier": "rules", "snapshot": None}
    s = SlotState("hero", stage=stage, next_train_at=10**6)
    if stage in ("shadow", "approval", "ramp"):
        s.challenger = tree
    elif stage == "promoted":
        s.incumbent, s.previous = tree, rules
    for key, value in changes.items():
        setattr(s, key, value)
    return s


def save(storage: RedisStorage, s: SlotState) -> None:
    rev = storage.ladder_revs([s.slot])[s.slot]
    storage.save_ladders([LadderWrite(s.slot, s.to_json(), rev)])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return ladder_config(tmp_path)


@pytest.fixture
def config(config_path: Path) -> StoreConfig:
    return load_config(config_path)


@pytest.fixture
def ladder_app(config_path: Path, storage: RedisStorage) -> Flask:
    settings = {**TEST_SETTINGS, "LADDER_CHECK_SECONDS": 0, "ADMIN_TOKEN": TOKEN}
    return create_app(config_path, storage=storage, settings=settings)


@pytest.fixture
def client(ladder_app: Flask) -> FlaskClient:
    return keyed(ladder_app.test_client())


def rank(client: FlaskClient, country: str = "DE") -> dict[str, Any]:
    response = client.post("/v1/rank", json={"context": {"device": "quest", "country": country}, "slots": ["hero"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def logged_hero(storage: RedisStorage, event_id: str) -> dict[str, Any]:
    pending = storage.pending(event_id)
    assert pending is not None
    [decision] = [d for d in pending.event["decisions"] if d["slot"] == "hero"]
    return decision


# --------------------------------------------------------------------------- workers


def test_workers_serve_a_new_ramp_without_restart_and_log_the_mixture(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig
) -> None:
    assert {rank(client)["slots"][0]["tier"] for _ in range(5)} == {"rules"}
    save(storage, state(config, "ramp", ramp_step=0))  # share 0.5
    tiers = set()
    for _ in range(60):
        page = rank(client)
        hero = page["slots"][0]
        tiers.add(hero["tier"])
        logged = logged_hero(storage, page["event_id"])
        candidates = logged["candidates"]
        # rules: 'a' gets 0.8; tree (country DE): 'c' gets 0.8; the rest share 0.2; the log holds their mixture
        rules = [0.8 if i == "a" else 0.2 / 6 for i in candidates]
        tree = [0.8 if i == "c" else 0.2 / 6 for i in candidates]
        assert logged["pmf"] == pytest.approx([0.5 * r + 0.5 * t for r, t in zip(rules, tree, strict=True)])
        assert hero["propensity"] == pytest.approx(logged["pmf"][candidates.index(hero["item"])])
        assert logged["tier"] == hero["tier"]
    assert tiers == {"rules", "tree"}
    slots = {s["slot"]: s for s in client.get("/v1/slots").get_json()["slots"]}
    assert slots["hero"]["stage"] == "ramp" and slots["hero"]["share"] == 0.5
    assert slots["hero"]["challenger_version"] == "tree-test00001" and slots["hero"]["tier"] == "rules"
    assert slots["row-1"]["stage"] == "incumbent" and slots["row-1"]["share"] == 0.0


def gradient_canary(config: StoreConfig) -> dict[str, Any]:
    """A gradient snapshot imitating the hero's rules, as a new canary serves."""
    from bandit.escalation.ladder import build_policy
    from bandit.escalation.learner import new_gradient_learner

    learner = new_gradient_learner(config, "hero", None)
    return learner.imitate(build_policy(config, "hero", {"tier": "rules", "snapshot": None})).snapshot


def hero_tiers(client: FlaskClient, storage: RedisStorage, n: int) -> list[dict[str, Any]]:
    """The hero's logged decision of ``n`` ranked pages, each checked: its propensity is its pmf's."""
    logged = []
    for _ in range(n):
        page = rank(client)
        decision = logged_hero(storage, page["event_id"])
        assert decision["tier"] == page["slots"][0]["tier"]
        assert decision["propensity"] == pytest.approx(decision["pmf"][decision["candidates"].index(decision["item"])])
        logged.append(decision)
    return logged


def test_workers_serve_a_gradient_canary_at_its_share_and_report_the_stage(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig
) -> None:
    canary = gradient_canary(config)
    save(storage, state(config, "canary", challenger={"tier": "gradient", "snapshot": canary}))
    share = config.slot("hero").escalation.canary
    tiers = [d["tier"] for d in hero_tiers(client, storage, 200)]
    assert set(tiers) == {"rules", "gradient"} and 0.03 < tiers.count("gradient") / len(tiers) < 0.2  # share 0.1
    slots = {s["slot"]: s for s in client.get("/v1/slots").get_json()["slots"]}
    assert slots["hero"]["stage"] == "canary" and slots["hero"]["share"] == share == 0.1
    assert slots["hero"]["challenger_version"] == canary["version"]


def test_workers_serve_the_gradient_canary_beside_a_tree_in_shadow_and_report_both_versions(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig
) -> None:
    canary = gradient_canary(config)
    save(storage, state(config, "shadow", canary={"tier": "gradient", "snapshot": canary}))
    logged = hero_tiers(client, storage, 200)
    assert all(d["shadow"]["version"] == "tree-test00001" for d in logged)  # the tree is still evaluated beside
    tiers = [d["tier"] for d in logged]
    assert set(tiers) == {"rules", "gradient"} and 0.03 < tiers.count("gradient") / len(tiers) < 0.2  # share 0.1
    slots = {s["slot"]: s for s in client.get("/v1/slots").get_json()["slots"]}
    assert slots["hero"]["stage"] == "shadow" and slots["hero"]["share"] == 0.1
    assert (
        slots["hero"]["challenger_version"] == "tree-test00001" and slots["hero"]["canary_version"] == canary["version"]
    )


def test_shadow_is_logged_beside_the_decision_and_joined(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig
) -> None:
    save(storage, state(config, "shadow"))
    page = rank(client)
    assert page["slots"][0]["tier"] == "rules"
    logged = logged_hero(storage, page["event_id"])
    shadow = logged["shadow"]
    assert (shadow["tier"], shadow["version"]) == ("tree", "tree-test00001")
    assert shadow["pmf"] == pytest.approx([0.8 if i == "c" else 0.2 / 6 for i in logged["candidates"]])
    Joiner(storage, config, grace=0).run_once(time.time() + config.reward.window_seconds + 1)
    [record] = [r for _, r in storage.joined() if r["slot"] == "hero"]
    assert record["shadow"] == shadow


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda c: {**snapshot(c, "tree-bad"), "kind": "pickle"}, id="bad-kind"),
        pytest.param(lambda c: snapshot(c, "tree-bad", item="zzz"), id="unknown-item"),
        pytest.param(lambda c: {k: v for k, v in snapshot(c, "tree-bad").items() if k != "rules"}, id="no-rules"),
    ],
)
def test_corrupt_snapshot_is_refused_and_the_slot_keeps_its_tier(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig, corrupt: Any
) -> None:
    save(storage, state(config, "promoted", previous=None))
    assert rank(client)["slots"][0]["tier"] == "tree"
    before = sample("storefront_snapshot_errors_total", slot="hero")
    bad = state(config, "promoted", previous=None)
    bad.incumbent = {"tier": "tree", "snapshot": corrupt(config)}
    save(storage, bad)
    for _ in range(3):
        page = rank(client)
        assert page["slots"][0]["tier"] == "tree"
        assert logged_hero(storage, page["event_id"])["policy_version"] == "tree-test00001"
    assert sample("storefront_snapshot_errors_total", slot="hero") == before + 1  # logged and counted once


def test_state_that_is_not_json_is_refused(client: FlaskClient, storage: RedisStorage) -> None:
    before = sample("storefront_snapshot_errors_total", slot="hero")
    storage.client.hset(storage.control_key("ladder:hero"), mapping={"state": "{not json", "rev": 1})
    storage.client.incr(storage.control_key("ladder:version"))
    assert rank(client)["slots"][0]["tier"] == "rules"
    assert sample("storefront_snapshot_errors_total", slot="hero") == before + 1


def test_redis_down_keeps_the_current_policies(config_path: Path, storage: RedisStorage, config: StoreConfig) -> None:
    save(storage, state(config, "promoted", previous=None))
    app = create_app(config_path, storage=storage, settings={**TEST_SETTINGS, "LADDER_CHECK_SECONDS": 0})
    holder: ConfigHolder = app.extensions["storefront"]
    assert holder.runtime.tiers()["hero"] == "tree"
    down = RedisStorage.from_url("redis://127.0.0.1:1/0", storage.prefix)
    assert holder.ladders is not None
    holder.ladders.storage = down
    page = rank(keyed(app.test_client()))
    assert page["slots"][0]["tier"] == "tree" and page["logged"] is True


def test_challenger_that_raises_serves_the_primary_and_reports_health(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(storage, state(config, "ramp", ramp_step=1))  # the tree serves everything...

    def boom(self: TreePolicy, context: Mapping[str, Any], candidates: Sequence[str]) -> Any:
        raise RuntimeError("model file missing")

    monkeypatch.setattr(TreePolicy, "_pmf", boom)  # ...until it breaks
    before = sample("storefront_challenger_errors_total", slot="hero")
    for _ in range(3):
        assert rank(client)["slots"][0]["tier"] == "rules"
    assert sample("storefront_challenger_errors_total", slot="hero") == before + 3
    rank(client)  # the next version check flushes the reports
    assert int(storage.client.hget(storage.control_key("health"), "hero")) >= 3
    monkeypatch.undo()
    runner = LadderRunner(storage, config, learner_factory=fake_learner)
    [fallback] = runner.run_once()
    assert (fallback["transition"], fallback["stage"]) == ("fallback", "incumbent")
    assert storage.history("hero")[0]["transition"] == "fallback"
    assert storage.client.hgetall(storage.control_key("health")) == {}
    assert rank(client)["slots"][0]["tier"] == "rules"
    assert SlotState.from_json(storage.load_ladders(["hero"])["hero"].state).incumbent["tier"] == "rules"


# --------------------------------------------------------------------------- the ladder runner


def fake_learner(config: StoreConfig, states: Mapping[str, SlotState]) -> Learner:
    """The real ladders, with a trainer that returns the hand-written tree and a gate that passes."""

    def trainer(cfg: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return snapshot(cfg, f"tree-n{len(records):08d}")

    def gate(*_: Any) -> dict[str, Any]:
        return {"passed": True, "reason": "test gate", "lift": 0.1, "lift_low": 0.05}

    return Learner(config, states, trainer=trainer, gate=gate)


def log_and_join(storage: RedisStorage, config: StoreConfig, pages: int) -> None:
    holder_now = time.time() - config.reward.window_seconds - 10
    from bandit.page import PageFiller

    filler = PageFiller(config)
    for i in range(pages):
        event_id = new_event_id(holder_now)
        ctx, _ = config.context.normalise({"device": "quest", "country": ["US", "DE", "JP"][i % 3], "hour": 12})
        page = filler.fill(ctx, event_id)
        storage.log_event({"event_id": event_id, "ts": holder_now, "window_close": holder_now + 1,
                           "config_version": config.version, "context": ctx,
                           "decisions": [d.to_dict() for d in page.decisions]}, 600)  # fmt: skip
        if i % 4 == 0:
            storage.add_reward(event_id, "hero", "click", {}, holder_now + 0.5, 600)
    Joiner(storage, config, grace=0).run_once(time.time())


def hero_joined(storage: RedisStorage) -> int:
    return sum(1 for _, r in storage.joined() if r["slot"] == "hero")


def test_runner_trains_shadows_and_awaits_approval(storage: RedisStorage, config: StoreConfig) -> None:
    log_and_join(storage, config, 60)
    runner = LadderRunner(storage, config, learner_factory=fake_learner, batch=25)
    made = runner.run_once()
    assert [t["transition"] for t in made] == ["trained", "awaiting_approval"]
    stored = storage.load_ladders(["hero"])["hero"]
    assert SlotState.from_json(stored.state).stage == "approval" and stored.cursor == storage.ladder_cursor()
    assert [h["transition"] for h in storage.history("hero")] == ["awaiting_approval", "trained"]
    assert sample("storefront_ladder_stage", slot="hero", stage="approval") == 1
    assert sample("storefront_ladder_stage", slot="hero", stage="shadow") == 0
    assert runner.run_once() == []  # nothing new


def test_learned_from_exactly_once_across_a_crash_and_restart(
    storage: RedisStorage, config: StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_and_join(storage, config, 40)
    first = LadderRunner(storage, config, learner_factory=fake_learner, batch=10, max_batches=2, lease_ttl=0.3)
    first.run_once()  # two batches of 10 records saved
    saved_cursor = storage.ladder_cursor()
    real_save = storage.save_ladders

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("killed between learning a batch and saving it")

    monkeypatch.setattr(storage, "save_ladders", crash)
    with pytest.raises(SystemExit):
        first.run_once()
    monkeypatch.setattr(storage, "save_ladders", real_save)
    assert storage.ladder_cursor() == saved_cursor
    # a new process: it waits for the dead one's lease to expire, then resumes from the saved cursor
    second = LadderRunner(storage, config, learner_factory=fake_learner, batch=10, lease_ttl=0.3)
    assert wait_for(lambda: bool(second.run_once()) or second.active, timeout=5)
    while second.run_once():
        pass
    assert second.cursor == storage.ladder_cursor() and second.cursor is not None
    hero = SlotState.from_json(storage.load_ladders(["hero"])["hero"].state)
    assert hero.seen == hero_joined(storage) == 40  # every joined hero decision, once
    ladder = second.learner.ladders["hero"]  # type: ignore[union-attr]
    assert len(ladder.buffer) == min(ladder.settings.train_window, 40)


def test_runner_adopts_admin_changes_and_never_overwrites_them(
    client: FlaskClient, storage: RedisStorage, config: StoreConfig
) -> None:
    save(storage, state(config, "shadow", next_gate_at=10**6))
    runner = LadderRunner(storage, config, learner_factory=fake_learner)
    runner.run_once()
    response = client.post("/v1/admin/slots/hero/freeze", headers=AUTH, json={"reason": "investigating"})
    assert response.status_code == 200
    log_and_join(storage, config, 6)
    runner.run_once()
    hero = SlotState.from_json(storage.load_ladders(["hero"])["hero"].state)
    assert hero.frozen and hero.seen == 6
    assert runner.learner is not None and runner.learner.ladders["hero"].state.frozen
    # the admin saves between the runner's check and its save: the runner learns the batch on the admin's state
    client.post("/v1/admin/slots/hero/unfreeze", headers=AUTH)
    log_and_join(storage, config, 3)
    entries = storage.joined_after(runner.cursor, 100)
    runner._step(entries, time.time())
    hero = SlotState.from_json(storage.load_ladders(["hero"])["hero"].state)
    assert not hero.frozen and hero.seen == 9
    assert [h["transition"] for h in storage.history("hero")][:2] == ["unfreeze", "freeze"]


def test_compare_and_set_refuses_a_stale_write(storage: RedisStorage, config: StoreConfig) -> None:
    s = state(config, "shadow")
    storage.save_ladders([LadderWrite("hero", s.to_json(), 0)])
    with pytest.raises(LadderConflict) as info:
        storage.save_ladders([LadderWrite("hero", s.to_json(), 0), LadderWrite("row-1", s.to_json(), 0)])
    assert info.value.slots == ["hero"]
    assert storage.ladder_revs(["hero", "row-1"]) == {"hero": 1, "row-1": 0}  # nothing of the refused write
    assert storage.ladder_version() == 1


def test_lease_one_runner_at_a_time_and_takeover(storage: RedisStorage, config: StoreConfig) -> None:
    log_and_join(storage, config, 5)
    a = LadderRunner(storage, config, learner_factory=fake_learner, lease_ttl=0.3, holder="a")
    b = LadderRunner(storage, config, learner_factory=fake_learner, lease_ttl=0.3, holder="b")
    a.run_once()
    b.run_once()
    assert (a.active, b.active, storage.lease_holder()) == (True, False, "a")
    assert SlotState.from_json(storage.load_ladders(["hero"])["hero"].state).seen == 5
    # `a` stops renewing (dead): `b` takes over once the lease expires, and `a` may no longer write
    assert wait_for(lambda: bool(b.run_once()) or b.active, timeout=5)
    assert storage.lease_holder() == "b" and b.cursor == a.cursor
    with pytest.raises(LeaseLost):
        storage.save_ladders([], cursor="0-1", lease_holder="a")
    a.run_once()
    assert not a.active
    b.release()
    assert storage.lease_holder() is None


def every_slot_config(tmp_path: Path) -> StoreConfig:
    """The test store with a ladder on each of its three slots."""
    text = STORE_CONFIG.read_text()
    for anchor in ("  - name: hero\n    exploration: 0.2\n", "  - name: row-1\n    exploration: 0.3\n",
                   "  - name: row-2\n    exploration: 0.3\n"):  # fmt: skip
        assert anchor in text
        text = text.replace(anchor, anchor + ESCALATION.replace("MODE", "manual"))
    path = tmp_path / "every-slot.yaml"
    path.write_text(text)
    return load_config(path)


def seen(storage: RedisStorage) -> dict[str, int]:
    return {slot: SlotState.from_json(entry.state).seen  # type: ignore[arg-type]
            for slot, entry in storage.load_ladders(["hero", "row-1", "row-2"]).items()}  # fmt: skip


def test_learners_share_the_slots_each_under_its_lease_and_take_over_a_dead_ones(
    storage: RedisStorage, tmp_path: Path
) -> None:
    config = every_slot_config(tmp_path)
    log_and_join(storage, config, 6)
    # a TTL that a loaded 2-core machine does not overrun between two calls (2 s did, with benchmarks beside it)
    a = LadderRunners(storage, config, learner_factory=fake_learner, lease_ttl=5.0, holder="a")
    b = LadderRunners(storage, config, learner_factory=fake_learner, lease_ttl=5.0, holder="b")
    a.run_once()
    assert a.held() == ["hero", "row-1", "row-2"] and seen(storage) == {"hero": 6, "row-1": 6, "row-2": 6}
    b.run_once()  # two learners now: a share of two slots each; `b` finds them all taken yet
    assert b.held() == []
    a.run_once()  # `a` hands its last slot over
    b.run_once()
    assert (a.held(), b.held()) == (["hero", "row-1"], ["row-2"])
    assert storage.lease_holder("ladder:row-2") == "b" and storage.lease_holder("ladder:hero") == "a"
    log_and_join(storage, config, 9)
    a.run_once()
    b.run_once()
    assert seen(storage) == {"hero": 15, "row-1": 15, "row-2": 15}  # every record once, whoever learned it
    # `a` dies (stops beating and renewing): once its leases expire `b` runs every slot, from each slot's cursor.
    time.sleep(5.1)
    log_and_join(storage, config, 3)
    assert wait_for(lambda: b.run_once() is not None and b.held() == ["hero", "row-1", "row-2"], timeout=5)
    assert seen(storage) == {"hero": 18, "row-1": 18, "row-2": 18}
    with pytest.raises(LeaseLost):
        storage.save_ladders([], cursor="0-1", lease_holder="a", lease="ladder:hero")
    b.release()
    assert storage.lease_holder("ladder:hero") is None and "b" not in storage.learners()
    assert "a" in storage.learners()  # dead, but not for long enough to be forgotten yet


def test_a_runner_whose_lease_lapsed_and_came_back_rereads_what_another_saved(
    storage: RedisStorage, config: StoreConfig
) -> None:
    log_and_join(storage, config, 4)
    a = LadderRunner(storage, config, learner_factory=fake_learner, holder="a", slot="hero")
    b = LadderRunner(storage, config, learner_factory=fake_learner, holder="b", slot="hero")
    a.run_once()
    storage.client.delete(storage.control_key("lease:ladder:hero"))  # `a` stalled past its TTL
    b.run_once()
    log_and_join(storage, config, 5)
    b.run_once()
    b.release()
    assert seen(storage)["hero"] == 9
    a.run_once()  # takes the free lease again: its memory (cursor, state) is behind what `b` saved
    assert a.active and a.cursor == b.cursor and seen(storage)["hero"] == 9  # nothing learned twice


def test_a_learner_silent_for_long_is_forgotten(storage: RedisStorage, config: StoreConfig) -> None:
    storage.beat_learner("ghost")
    runners = LadderRunners(storage, config, learner_factory=fake_learner, lease_ttl=0.04, holder="alive")
    assert runners.share() == 1 and "ghost" in storage.learners()  # silent, not counted, not yet forgotten
    time.sleep(1.3)  # over 30 TTLs
    runners.share()
    assert "ghost" not in storage.learners()


def test_slot_runners_stand_aside_while_a_runner_of_every_slot_holds_its_lease(
    storage: RedisStorage, config: StoreConfig
) -> None:
    """A rolling upgrade: a learner of the earlier version (one lease for every slot) is still running."""
    log_and_join(storage, config, 5)
    old = LadderRunner(storage, config, learner_factory=fake_learner, lease_ttl=0.5, holder="old")
    new = LadderRunners(storage, config, learner_factory=fake_learner, lease_ttl=0.5, holder="new")
    old.run_once()
    assert new.run_once() == [] and new.held() == []
    old.release()
    log_and_join(storage, config, 4)
    new.run_once()
    # It goes on from the earlier runner's cursor: nothing learned twice.
    assert new.held() == ["hero"] and seen(storage)["hero"] == 9


def test_the_admin_api_names_the_learner_running_each_slot(
    storage: RedisStorage, config: StoreConfig, client: FlaskClient
) -> None:
    log_and_join(storage, config, 3)
    runners = LadderRunners(storage, config, learner_factory=fake_learner, holder="host:42:abc")
    runners.run_once()
    slots = {s["slot"]: s for s in client.get("/v1/admin/slots", headers=AUTH).get_json()["slots"]}
    assert slots["hero"]["learner"] == "host:42:abc" and slots["row-1"]["learner"] is None  # no ladder there
    runners.release()
    assert client.get("/v1/admin/slots/hero", headers=AUTH).get_json()["learner"] is None


# --------------------------------------------------------------------------- admin API


def test_admin_is_off_without_a_token(config_path: Path, storage: RedisStorage) -> None:
    client = keyed(
        create_app(config_path, storage=storage, settings={**TEST_SETTINGS, "ADMIN_TOKEN": None}).test_client()
    )
    for method, path in [("get", "/v1/admin/slots"), ("post", "/v1/admin/slots/hero/promote")]:
        response = client.open(path, method=method.upper(), headers=AUTH)
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert error["code"] == "admin_disabled" and "STOREFRONT_ADMIN_TOKEN" in error["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])  # fmt: skip
def test_admin_needs_the_token(client: FlaskClient, headers: dict[str, str]) -> None:
    client.environ_base.pop("HTTP_AUTHORIZATION")  # not the store's backend key: it is refused with a 403 (below)
    for method, path in [("get", "/v1/admin/slots"), ("post", "/v1/admin/slots/hero/freeze")]:
        response = client.open(path, method=method.upper(), headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
        backend = client.open(path, method=method.upper(), headers={"Authorization": f"Bearer {BACKEND_KEY}"})
        assert backend.status_code == 403 and backend.get_json()["error"]["code"] == "forbidden"


def test_admin_status_actions_and_history(client: FlaskClient, storage: RedisStorage, config: StoreConfig) -> None:
    listing = client.get("/v1/admin/slots", headers=AUTH).get_json()
    assert [s["slot"] for s in listing["slots"]] == ["hero", "row-1", "row-2"]
    assert listing["slots"][0]["stage"] == "incumbent" and listing["slots"][0]["rev"] == 0

    refused = client.post("/v1/admin/slots/hero/promote", headers=AUTH)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "invalid_transition"
    assert "nothing to promote" in refused.get_json()["error"]["message"]
    assert client.post("/v1/admin/slots/hero/rollback", headers=AUTH).status_code == 409
    unknown = client.post("/v1/admin/slots/footer/freeze", headers=AUTH)
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "unknown_slot"
    assert client.get("/v1/admin/slots/footer", headers=AUTH).status_code == 404
    bad = client.post("/v1/admin/slots/hero/freeze", headers=AUTH, json={"why": "x"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "unknown_field"

    save(storage, state(config, "approval", last_gate={"passed": True, "reason": "lift", "at": 1.0}))
    before = sample("storefront_ladder_transitions_total", slot="hero", transition="ramp")
    promoted = client.post("/v1/admin/slots/hero/promote", headers=AUTH, json={"reason": "looks good"})
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    body = promoted.get_json()
    assert body["transition"]["transition"] == "ramp" and body["transition"]["actor"] == "admin"
    assert body["status"]["stage"] == "ramp" and body["status"]["share"] == 0.5
    assert sample("storefront_ladder_transitions_total", slot="hero", transition="ramp") == before + 1
    assert {rank(client)["slots"][0]["tier"] for _ in range(40)} == {"rules", "tree"}  # this worker, at once

    assert client.post("/v1/admin/slots/hero/promote", headers=AUTH).get_json()["status"]["stage"] == "promoted"
    assert {rank(client)["slots"][0]["tier"] for _ in range(200)} == {"tree", "rules"}  # 10% holdout on rules
    assert client.post("/v1/admin/slots/hero/freeze", headers=AUTH).get_json()["status"]["frozen"] is True
    assert client.post("/v1/admin/slots/hero/unfreeze", headers=AUTH).get_json()["status"]["frozen"] is False
    rolled = client.post("/v1/admin/slots/hero/rollback", headers=AUTH).get_json()
    assert rolled["status"]["tier"] == "rules" and rolled["status"]["stage"] == "incumbent"
    assert {rank(client)["slots"][0]["tier"] for _ in range(10)} == {"rules"}

    detail = client.get("/v1/admin/slots/hero", headers=AUTH).get_json()
    assert [h["transition"] for h in detail["history"]] == ["rollback", "unfreeze", "freeze", "promoted", "ramp"]
    assert detail["history"][-1]["note"] == "looks good"
    assert detail["last_gate"]["passed"] is True and "history" not in detail["state"]
    assert detail["rev"] == 6 and detail["state_version"] == 5
    slots = client.get("/v1/slots").get_json()["slots"]
    assert slots[0]["stage"] == "incumbent" and slots[0]["last_gate"]["passed"] is True
    json.dumps(detail)  # plain JSON all the way down


def test_a_long_training_keeps_the_lease(storage: RedisStorage, config: StoreConfig) -> None:
    def slow_learner(cfg: StoreConfig, states: Mapping[str, SlotState]) -> Learner:
        learner = fake_learner(cfg, states)
        for ladder in learner.ladders.values():
            quick = ladder.trainer

            def trainer(*args: Any, quick: Any = quick) -> dict[str, Any]:
                time.sleep(1.0)  # a retrain on a big window: several lease TTLs
                return quick(*args)

            ladder.trainer = trainer
        return learner

    log_and_join(storage, config, 40)  # enough for the first tree (retrain_every: 30)
    a = LadderRunner(storage, config, learner_factory=slow_learner, lease_ttl=0.3, holder="a")
    b = LadderRunner(storage, config, learner_factory=fake_learner, lease_ttl=0.3, holder="b")
    thread = threading.Thread(target=a.run_once)
    thread.start()
    assert wait_for(lambda: storage.lease_holder() == "a", timeout=5)  # a took the lease and is training
    deadline = time.monotonic() + 0.7
    while time.monotonic() < deadline:  # a standby polling all through the training never gets in
        b.run_once()
        assert not b.active and storage.lease_holder() == "a"
        time.sleep(0.05)
    thread.join()
    assert a.active
    hero = SlotState.from_json(storage.load_ladders(["hero"])["hero"].state)
    assert hero.stage == "shadow" and hero.seen == 40  # the trained challenger was saved


def gradient_config(tmp_path: Path) -> StoreConfig:
    """The test store with its hero starting on the gradient tier, learning in batches of 8."""
    text = STORE_CONFIG.read_text()
    anchor = "  - name: hero\n    exploration: 0.2\n"
    path = tmp_path / "gradient.yaml"
    path.write_text(text.replace(anchor, anchor + "    tier: gradient\n    gradient: {batch: 8, min_events: 0}\n"))
    return load_config(path)


def test_the_gradient_learner_checkpoints_so_a_crash_neither_loses_nor_relearns_an_event(
    storage: RedisStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gradient_config(tmp_path)
    log_and_join(storage, config, 40)
    first = LadderRunner(storage, config, batch=10, max_batches=2, lease_ttl=0.3)
    first.run_once()  # two batches of 10 records learned, saved with the learner's checkpoint
    saved = storage.load_checkpoints(["hero"])["hero"]
    first_hero = sum(1 for _, r in itertools.islice(storage.joined(), 20) if r["slot"] == "hero" and r["tier"] != "pin")
    assert saved["learned"] + len(saved["pending"]) == first_hero  # learned in batches of 8, the rest waiting
    real_save = storage.save_ladders

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("killed between learning a batch and saving it")

    monkeypatch.setattr(storage, "save_ladders", crash)
    with pytest.raises(SystemExit):
        first.run_once()  # learned 20 more records, never saved
    monkeypatch.setattr(storage, "save_ladders", real_save)
    second = LadderRunner(storage, config, batch=10, lease_ttl=0.3)
    assert wait_for(lambda: bool(second.run_once()) or second.active, timeout=5)
    while second.run_once():
        pass
    gradient = second.learner.gradients()["hero"]  # type: ignore[union-attr]
    learned, pending = gradient.progress()
    # every joined hero record exactly once: none lost with the crash, none learned twice after it
    assert learned + pending == hero_joined(storage)
    assert sample("storefront_gradient_learned_records", slot="hero") == learned > saved["learned"]
    state = SlotState.from_json(storage.load_ladders(["hero"])["hero"].state)
    assert state.incumbent["tier"] == "gradient"
