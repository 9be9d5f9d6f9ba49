"""The Personalizer-compatible API in process: mapping details the SDK test does not reach."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bandit.config import load_config
from bandit.eventlog.events import is_learnable
from service.learner.joiner import Joiner
from service.storage.redis_storage import RedisStorage
from tests.conftest import STORE_CONFIG

ACTIONS = [{"id": i, "features": [{"genre": "x"}]} for i in ("a", "b", "c", "d", "e", "f")]


def rank(client: FlaskClient, path: str = "/personalizer/rank", **body: Any) -> Any:
    return client.post(path, json={"contextFeatures": [{"device": "quest"}], "actions": ACTIONS, **body})


def test_versioned_and_unversioned_paths_rank_alike(client: FlaskClient) -> None:
    for path in ("/personalizer/rank?api-version=2022-09-01-preview", "/personalizer/v1.0/rank"):
        answer = rank(client, path)
        assert answer.status_code == 201, answer.get_data(as_text=True)
        assert len(answer.get_json()["eventId"]) == 43  # the service's own signed id when the client sent none
    assert rank(client, "/personalizer/v9/rank").status_code == 404


def test_features_map_onto_declared_context_fields_and_the_rest_is_named(client: FlaskClient) -> None:
    answer = client.post("/personalizer/rank", json={
        "contextFeatures": [{"user": {"device": "pcvr", "country": "JP"}}, {"referrer": "ad", "tags": ["x"]}],
        "actions": ACTIONS,
    })  # fmt: skip
    assert answer.status_code == 201
    assert answer.headers["X-Storefront-Ignored-Features"] == "referrer, tags"
    conflicting = client.post("/personalizer/rank", json={
        "contextFeatures": [{"device": "pcvr"}, {"user": {"device": "quest"}}], "actions": ACTIONS})  # fmt: skip
    assert conflicting.status_code == 400 and conflicting.get_json()["error"]["field"] == "contextFeatures.device"


def test_multi_slot_exclusions_per_slot_hold_and_no_item_is_served_twice(client: FlaskClient) -> None:
    for _ in range(30):
        answer = client.post("/personalizer/multislot/rank", json={
            "contextFeatures": [{"device": "quest"}], "actions": ACTIONS,
            "slots": [{"id": "row-1", "baselineAction": "c", "excludedActions": ["d", "e"]},
                      {"id": "hero", "baselineAction": "a", "excludedActions": ["a"]}],
        })  # fmt: skip
        assert answer.status_code == 201, answer.get_data(as_text=True)
        chosen = {s["id"]: s["rewardActionId"] for s in answer.get_json()["slots"]}
        assert list(chosen) == ["row-1", "hero"]  # the request's order
        assert chosen["hero"] != "a" and chosen["row-1"] not in ("d", "e") and chosen["hero"] != chosen["row-1"]


def test_baseline_and_slot_mistakes_name_their_field(client: FlaskClient) -> None:
    cases = [
        ([{"id": "footer", "baselineAction": "a"}], "slots[0].id"),
        ([{"id": "hero", "baselineAction": "zz"}], "slots[0].baselineAction"),
        ([{"id": "hero", "baselineAction": "a"}, {"id": "hero", "baselineAction": "b"}], "slots[1].id"),
    ]
    for slots, field in cases:
        answer = client.post("/personalizer/multislot/rank", json={
            "contextFeatures": [{"device": "quest"}], "actions": ACTIONS, "slots": slots})  # fmt: skip
        assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field, answer.get_json()


def test_activation_marks_only_the_activated_deferred_page_learnable(
    client: FlaskClient, app: Flask, storage: RedisStorage
) -> None:
    shown = rank(client, eventId="pz-shown", deferActivation=True).get_json()
    hidden = rank(client, eventId="pz-hidden", deferActivation=True).get_json()
    plain = rank(client).get_json()
    assert client.post("/personalizer/events/pz-shown/activate").status_code == 204
    assert client.post(f"/personalizer/events/{plain['eventId']}/activate").status_code == 204  # nothing to do
    assert client.post("/personalizer/events/pz-hidden/reward", json={"value": 1}).status_code == 204
    assert client.post("/personalizer/events/never-ranked/activate").status_code == 404
    assert shown["eventId"] == "pz-shown" and hidden["eventId"] == "pz-hidden"

    joiner = Joiner(storage, load_config(STORE_CONFIG), grace=0.0)
    joiner.run_once(now=app.extensions["storefront.clock"].time() + 10)
    records = {r["event_id"]: r for _, r in storage.joined()}
    by_external = {ext: records[storage.mapped_event(ext)[0]] for ext in ("pz-shown", "pz-hidden")}  # type: ignore[index]
    assert by_external["pz-shown"]["active"] is True and by_external["pz-hidden"]["active"] is False
    assert by_external["pz-hidden"]["explicit_reward"] == 1.0 and "activate" not in by_external["pz-shown"]["outcomes"]
    assert "active" not in records[plain["eventId"]]


@pytest.mark.parametrize("value", [1.5, -2, "1", None])
def test_a_reward_outside_personalizers_range_is_refused(client: FlaskClient, value: Any) -> None:
    event_id = rank(client).get_json()["eventId"]
    answer = client.post(f"/personalizer/events/{event_id}/reward", json={"value": value})
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "value"


def test_a_body_nested_past_the_limit_is_a_400_not_a_crash(client: FlaskClient) -> None:
    """contextFeatures are walked recursively: 900 nested objects fit the size limit and Python's parser."""
    deep: dict[str, Any] = {"device": "quest"}
    for _ in range(900):
        deep = {"x": deep}
    for path in ("/personalizer/rank", "/v1/rank"):
        body = (
            {"contextFeatures": [deep], "actions": ACTIONS} if path.startswith("/personalizer") else {"context": deep}
        )
        answer = client.post(path, json=body)
        assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "body", path
        assert "32 levels" in answer.get_json()["error"]["message"]
    ok = {"user": {"profile": {"device": "quest"}}}  # a few levels are fine
    assert client.post("/personalizer/rank", json={"contextFeatures": [ok], "actions": ACTIONS}).status_code == 201


NEWS = {"id": "news-1", "features": [{"genre": "sim"}, {"publisher": "indie", "mood": "calm"}]}


def joined(app: Flask, storage: RedisStorage) -> dict[tuple[str, str], dict[str, Any]]:
    """Every ranked page joined now: the records by (event id, slot)."""
    Joiner(storage, load_config(STORE_CONFIG), grace=0.0).run_once(now=app.extensions["storefront.clock"].time() + 10)
    return {(r["event_id"], r["slot"]): r for _, r in storage.joined()}


def test_an_ad_hoc_action_is_ranked_by_its_features_logged_with_them_and_not_learned_from(
    client: FlaskClient, app: Flask, storage: RedisStorage
) -> None:
    answer = rank(client, actions=[NEWS, *ACTIONS])  # the first action: the client's baseline
    assert answer.status_code == 201, answer.get_json()
    assert answer.headers["X-Storefront-Ignored-Features"] == "actions[0].mood"
    ranking = answer.get_json()["ranking"]
    assert {r["id"] for r in ranking} == {"news-1", *"abcdef"} and min(r["probability"] for r in ranking) > 0
    event_id = answer.get_json()["eventId"]
    assert client.post(f"/personalizer/events/{event_id}/reward", json={"value": 1}).status_code == 204
    record = joined(app, storage)[event_id, "hero"]
    assert record["actions"] == {"news-1": {"publisher": "indie", "features": {"genre": "sim"}}}
    assert record["explicit_reward"] == 1.0 and not is_learnable(record)
    # No rule matches a US shopper on a Quest: the rules tier favours the client's baseline over its default.
    assert record["candidates"][record["pmf"].index(max(record["pmf"]))] == "news-1"
    assert record["explanation"].removeprefix("explore; ") == "baseline"


@pytest.mark.parametrize(
    ("actions", "extra", "field"),
    [
        ([{"id": "n", "features": [{"price": 500}]}], {}, "actions[0].features.price"),
        ([{"id": "n", "features": [{"genre": "jazz"}]}], {}, "actions[0].features.genre"),
        ([{"id": "n", "features": [{"publisher": 5}]}], {}, "actions[0].features.publisher"),
        ([{"id": "n", "features": {"genre": "sim"}}], {}, "actions[0].features"),
        ([{"id": ""}], {}, "actions[0].id"),
        (["a"], {}, "actions[0]"),
        ([{"id": "a"}, {"id": "a"}], {}, "actions[1].id"),
        ([{"id": "a"}], {"excludedActions": ["b"]}, "excludedActions[0]"),
    ],
)
def test_a_bad_action_is_refused_naming_its_field(client: FlaskClient, actions: Any, extra: Any, field: str) -> None:
    answer = rank(client, actions=actions, **extra)
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field, answer.get_json()


def test_multi_slot_baselines_are_each_slots_favourite_when_no_rule_matches(
    client: FlaskClient, app: Flask, storage: RedisStorage
) -> None:
    answer = client.post("/personalizer/multislot/rank", json={
        "contextFeatures": [{"device": "quest"}], "actions": [*ACTIONS, NEWS],
        "slots": [{"id": "hero", "baselineAction": "c"}, {"id": "row-1", "baselineAction": "news-1"}],
    })  # fmt: skip
    assert answer.status_code == 201, answer.get_json()
    event_id = answer.get_json()["eventId"]
    records = joined(app, storage)
    hero, row = records[event_id, "hero"], records[event_id, "row-1"]
    assert hero["candidates"][hero["pmf"].index(max(hero["pmf"]))] == "c"
    assert hero["explanation"].removeprefix("explore; ") == "baseline"
    if hero["chosen"] == "news-1":  # the hero explored onto row-1's baseline (~3%): a page shows an item once
        assert "news-1" not in row["candidates"]
        assert row["candidates"][row["pmf"].index(max(row["pmf"]))] == "c"  # its rules' default
        return
    assert row["candidates"][row["pmf"].index(max(row["pmf"]))] == "news-1"
    assert row["explanation"].removeprefix("explore; ") == "baseline"
