"""The store-facing API on its happy paths, in process, against a real Redis."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from bandit.config import load_config
from bandit.eventlog.events import reward_value
from service.http.app import create_app
from service.storage import RedisStorage
from tests.conftest import EXAMPLE_CONFIG, STORE_CONFIG
from tests.support import TEST_SETTINGS, keyed

ITEMS = {"a", "b", "c", "d", "e", "f", "g"}  # tests/fixtures/store.yaml
PUBLISHER = {"a": "p1", "b": "p1", "c": "p2", "d": "p2", "e": "p3", "f": "p3", "g": "p4"}


def rank(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    page: dict[str, Any] = response.get_json()
    return page


def post_reward(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/reward", json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def stored_event(storage: RedisStorage, event_id: str) -> dict[str, Any]:
    raw = storage.client.hget(f"{storage.prefix}ev:{event_id}", "d")
    assert raw is not None, f"event {event_id} is not in Redis"
    event: dict[str, Any] = storage.unpack_event(raw)
    return event


def unreachable() -> RedisStorage:
    return RedisStorage.from_url("redis://127.0.0.1:1/0", "x:")


# --------------------------------------------------------------------------- /v1/rank


def test_rank_fills_every_slot_in_page_order(client: FlaskClient, app: Flask) -> None:
    page = rank(client, {"context": {"device": "quest"}})
    assert set(page) == {"event_id", "config_version", "logged", "slots"}
    assert page["logged"] is True
    assert page["config_version"] == app.extensions["storefront"].runtime.config.version
    assert isinstance(page["event_id"], str) and page["event_id"]
    assert [s["slot"] for s in page["slots"]] == ["hero", "row-1", "row-2"]
    items = [s["item"] for s in page["slots"]]
    assert set(items) <= ITEMS and len(set(items)) == 3  # no item twice on a page
    for slot in page["slots"]:
        assert 0 < slot["propensity"] <= 1 and slot["tier"] == "rules" and slot["explanation"]


def test_rank_a_subset_comes_back_in_page_order(client: FlaskClient) -> None:
    page = rank(client, {"context": {"device": "quest"}, "slots": ["row-2", "hero"]})
    assert [s["slot"] for s in page["slots"]] == ["hero", "row-2"]


def test_candidates_and_exclude_are_respected(client: FlaskClient) -> None:
    for _ in range(20):
        page = rank(client, {"context": {"device": "pcvr"}, "candidates": ["a", "c", "e", "g"], "exclude": ["e"]})
        assert {s["item"] for s in page["slots"]} == {"a", "c", "g"}
        page = rank(client, {"context": {"device": "quest"}, "exclude": ["a", "c"]})
        assert not {s["item"] for s in page["slots"]} & {"a", "c"}


def test_slots_left_without_candidates_are_unfilled(client: FlaskClient) -> None:
    page = rank(client, {"context": {"device": "quest"}, "candidates": ["b"]})
    assert page["slots"][0]["item"] == "b" and page["slots"][0]["propensity"] == 1.0
    assert page["slots"][1:] == [
        {"slot": name, "item": None, "propensity": None, "tier": None, "explanation": "no eligible candidate"}
        for name in ("row-1", "row-2")
    ]
    assert page["logged"] is True
    nothing = rank(client, {"context": {"device": "quest"}, "candidates": []})
    assert all(s["item"] is None for s in nothing["slots"])
    assert nothing["logged"] is False  # nothing was decided, so nothing to reward


def test_rules_match_the_context(client: FlaskClient) -> None:
    # hero: country JP → [b, a]; device pcvr → e; exploration 0.2 spreads over the rest.
    served = [rank(client, {"context": {"device": "pcvr"}, "slots": ["hero"]})["slots"][0] for _ in range(40)]
    assert any(s["item"] == "e" and s["explanation"] == "rule:pcvr" for s in served)
    assert all(s["item"] == "e" or s["explanation"].startswith("explore") for s in served)


def test_pin_wins_its_slot(storage: RedisStorage) -> None:
    # examples/storefront.yaml pins golf-plus to row-2 for shoppers in France.
    client = keyed(create_app(EXAMPLE_CONFIG, storage=storage, settings=TEST_SETTINGS).test_client())
    for _ in range(10):
        page = rank(client, {"context": {"device": "quest", "country": "FR"}})
        row2 = page["slots"][2]
        assert row2 == {"slot": "row-2", "item": "golf-plus", "propensity": 1.0, "tier": "pin", "explanation": "pin"}
        assert "golf-plus" not in [s["item"] for s in page["slots"][:2]]  # a pinned item is placed only once
        other = rank(client, {"context": {"device": "quest", "country": "US"}})
        assert other["slots"][2]["tier"] == "rules"


def test_publisher_cap(storage: RedisStorage, tmp_path: Path) -> None:
    config = tmp_path / "store.yaml"
    config.write_text(STORE_CONFIG.read_text() + "constraints:\n  publisher_cap: 1\n")
    client = keyed(create_app(config, storage=storage, settings=TEST_SETTINGS).test_client())
    for _ in range(20):
        page = rank(client, {"context": {"device": "quest"}, "candidates": ["a", "b", "c"]})
        items = [s["item"] for s in page["slots"] if s["item"] is not None]
        publishers = [PUBLISHER[i] for i in items]
        assert len(publishers) == len(set(publishers)) == 2  # one of p1's two items, and c; the last slot is empty
        assert page["slots"][2]["item"] is None


def test_logged_event_has_the_filled_in_context_and_full_pmfs(client: FlaskClient, storage: RedisStorage) -> None:
    page = rank(client, {"context": {"device": "quest", "age": 30}})
    event = stored_event(storage, page["event_id"])
    assert event["event_id"] == page["event_id"] and event["config_version"] == page["config_version"]
    # Defaults filled in: country (US) and hour (the server's clock); age as sent.
    assert set(event["context"]) == {"device", "country", "age", "hour"}
    assert event["context"]["country"] == "US" and event["context"]["age"] == 30
    assert event["context"]["hour"] in range(24)
    assert event["window_close"] == pytest.approx(event["ts"] + 2.0)
    assert [d["slot"] for d in event["decisions"]] == ["hero", "row-1", "row-2"]
    for decision, served in zip(event["decisions"], page["slots"], strict=True):
        assert decision["item"] == served["item"] and decision["propensity"] == served["propensity"]
        assert len(decision["pmf"]) == len(decision["candidates"]) and all(p > 0 for p in decision["pmf"])
        assert math.isclose(sum(decision["pmf"]), 1.0, abs_tol=1e-9)
        assert decision["pmf"][decision["candidates"].index(decision["item"])] == decision["propensity"]
    # Later slots never see what earlier slots took.
    assert event["decisions"][0]["item"] not in event["decisions"][1]["candidates"]


# --------------------------------------------------------------------------- /v1/reward


def test_reward_accepted_duplicate_and_last_explicit_wins(client: FlaskClient, storage: RedisStorage) -> None:
    event_id = rank(client, {"context": {"device": "quest"}})["event_id"]
    hero = {"event_id": event_id, "slot": "hero"}
    assert post_reward(client, {**hero, "event": "click"}) == {"status": "accepted"}
    again = post_reward(client, {**hero, "event": "click"})
    assert again["status"] == "duplicate" and "first one counts" in again["note"]
    assert post_reward(client, {**hero, "event": "purchase", "revenue": 20})["status"] == "accepted"
    assert post_reward(client, {**hero, "event": "purchase", "revenue": 999})["status"] == "duplicate"
    assert post_reward(client, {**hero, "reward": 0.5})["status"] == "accepted"
    assert post_reward(client, {**hero, "reward": 1.5})["status"] == "accepted"  # explicit: the last one counts
    assert post_reward(client, {"event_id": event_id, "slot": "row-1", "event": "add_to_cart"})["status"] == "accepted"

    pending = storage.pending(event_id)
    assert pending is not None
    assert pending.rewards == {
        "hero": {"click": {}, "purchase": {"revenue": 20.0}, "reward": 1.5},
        "row-1": {"add_to_cart": {}},
    }
    config = load_config(STORE_CONFIG).reward
    assert reward_value(config, pending.rewards["hero"]) == pytest.approx(1 + 5 + 0.1 * 20 + 1.5)
    assert reward_value(config, pending.rewards["row-1"]) == 2


def test_slots_counts(client: FlaskClient) -> None:
    before = client.get("/v1/slots").get_json()
    first = rank(client, {"context": {"device": "quest"}})
    rank(client, {"context": {"device": "quest"}, "slots": ["hero"]})
    post_reward(client, {"event_id": first["event_id"], "slot": "hero", "event": "click"})
    response = client.get("/v1/slots")
    assert response.status_code == 200
    after = response.get_json()
    assert after["store"] == "test-store" and after["counts_available"] is True
    assert [s["slot"] for s in after["slots"]] == ["hero", "row-1", "row-2"]
    assert [s["position"] for s in after["slots"]] == [0, 1, 2]
    assert [s["exploration"] for s in after["slots"]] == [0.2, 0.3, 0.3]
    for b, a, new_decisions, new_rewards in zip(before["slots"], after["slots"], (2, 1, 1), (1, 0, 0), strict=True):
        assert a["tier"] == "rules" and a["config_version"] == after["config_version"]
        assert a["counts"]["decisions"] == b["counts"]["decisions"] + new_decisions
        assert a["counts"]["decisions_by_tier"] == {"rules": a["counts"]["decisions"]}
        assert a["counts"]["rewards"] == b["counts"]["rewards"] + new_rewards


# --------------------------------------------------------------------------- ops


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz(client: FlaskClient, app: Flask) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    version = app.extensions["storefront"].runtime.config.version
    writer = {"ok": True, "degraded": False, "spool_bytes": 0, "spool_room": False, "pending": 0, "rewards_waiting": 0}
    assert response.get_json() == {
        "status": "ready",
        "checks": {"config": {"ok": True, "version": version}, "storage": {"ok": True}, "writer": writer},
    }


def test_readyz_503_when_redis_is_unreachable() -> None:
    client = keyed(create_app(STORE_CONFIG, storage=unreachable(), settings=TEST_SETTINGS).test_client())
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready" and body["checks"]["config"]["ok"] is True
    assert body["checks"]["storage"]["ok"] is False and body["checks"]["storage"]["error"]


def test_rules_tier_serves_without_redis_but_rewards_wait() -> None:
    client = keyed(create_app(STORE_CONFIG, storage=unreachable(), settings=TEST_SETTINGS).test_client())
    page = rank(client, {"context": {"device": "quest", "country": "JP"}})
    assert page["logged"] is False
    assert [s["slot"] for s in page["slots"]] == ["hero", "row-1", "row-2"]
    assert all(s["item"] in ITEMS and s["propensity"] > 0 for s in page["slots"])
    response = client.post("/v1/reward", json={"event_id": page["event_id"], "slot": "hero", "event": "click"})
    assert response.status_code == 503
    assert response.get_json() == {
        "error": {"code": "storage_unavailable", "message": "rewards cannot be stored right now; retry later",
                  "field": None},
    }  # fmt: skip
    slots = client.get("/v1/slots")
    assert slots.status_code == 200 and slots.get_json()["counts_available"] is False


# --------------------------------------------------------------------------- config hot reload


def _reloads(result: str) -> float:
    return REGISTRY.get_sample_value("storefront_config_reloads_total", {"result": result}) or 0.0


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` with an mtime clearly after the last one, so the change is seen whatever the clock."""
    previous = path.stat().st_mtime_ns
    path.write_text(text)
    stamp = previous + 10_000_000_000
    os.utime(path, ns=(stamp, stamp))


def test_config_hot_reload(storage: RedisStorage, tmp_path: Path) -> None:
    config = tmp_path / "store.yaml"
    shutil.copy(STORE_CONFIG, config)
    app = create_app(config, storage=storage, settings=TEST_SETTINGS)
    holder = app.extensions["storefront"]
    holder.check_every = 0
    holder._next_check = time.monotonic()  # the first check was scheduled with the default interval
    client = keyed(app.test_client())
    original = rank(client, {"context": {"device": "quest"}})["config_version"]

    _rewrite(config, STORE_CONFIG.read_text().replace("exploration: 0.2", "exploration: 0.25"))
    applied = _reloads("applied")
    reloaded = rank(client, {"context": {"device": "quest"}})["config_version"]
    assert reloaded != original and reloaded == load_config(config).version
    assert _reloads("applied") == applied + 1
    assert client.get("/v1/slots").get_json()["slots"][0]["exploration"] == 0.25
    assert client.get("/openapi.json").get_json()["x-config-version"] == reloaded

    refused = _reloads("refused")
    _rewrite(config, config.read_text().replace("default: [c, d]", "default: [c, nope]"))
    page = rank(client, {"context": {"device": "quest"}})
    assert page["config_version"] == reloaded  # the broken file is refused; the last good config keeps serving
    assert _reloads("refused") == refused + 1
    assert client.get("/readyz").get_json()["checks"]["config"]["version"] == reloaded


def test_the_watched_transition_counters_exist_before_the_first_transition(app: Flask) -> None:
    """``increase()`` over a series that first appears at 1 is 0: a first rollback must find its counter at 0."""
    from prometheus_client import REGISTRY

    for slot in ("hero", "row-1", "row-2"):
        for transition in ("rollback", "fallback", "rejected", "promoted"):
            labels = {"slot": slot, "transition": transition}
            assert REGISTRY.get_sample_value("storefront_ladder_transitions_total", labels) is not None, labels
