"""The Personalizer-compatible API driven by Microsoft's own client (`azure-ai-personalizer`) over real HTTP.

A live `storefront serve` (gunicorn, Redis, the learner); the client is the one a store that used Azure
Personalizer already runs, pointed at this service's URL with one of its keys.  Every reward must come out
joined in the export, a deferred event learned from only once activated.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LiveService, start_service, stop_service
from tests.support import BACKEND_KEY

pytestmark = pytest.mark.integration

ACTIONS = [{"id": item, "features": [{"genre": genre}]} for item, genre in
           (("a", "rhythm"), ("b", "rhythm"), ("c", "shooter"), ("e", "sim"))]  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = start_service(tmp_path_factory.mktemp("personalizer"), STORE_CONFIG)
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def client(live: LiveService) -> Iterator[PersonalizerClient]:
    with PersonalizerClient(live.url, AzureKeyCredential(BACKEND_KEY)) as c:
        yield c


def joined(live: LiveService, tmp_path: Path, event_ids: set[str], timeout: float = 30.0) -> list[dict[str, Any]]:
    """The exported records of these events, once every one of them is joined."""
    out = tmp_path / "joined.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        live.storefront("export", "--out", str(out))
        records = [r for r in map(json.loads, out.read_text().splitlines()) if r["event_id"] in event_ids]
        if {r["event_id"] for r in records} == event_ids or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def test_single_slot_rank_and_reward_are_joined(live: LiveService, client: PersonalizerClient, tmp_path: Path) -> None:
    answer = client.rank({
        "contextFeatures": [{"device": "quest"}, {"country": "JP"}, {"session": {"referrer": "ad"}}],
        "actions": ACTIONS,
        "excludedActions": ["c"],
    })  # fmt: skip
    ranking = {r["id"]: r["probability"] for r in answer["ranking"]}
    assert set(ranking) == {"a", "b", "c", "e"} and ranking["c"] == 0
    assert sum(ranking.values()) == pytest.approx(1.0) and answer["rewardActionId"] in {"a", "b", "e"}
    assert answer["ranking"][0]["id"] == answer["rewardActionId"]
    client.reward(answer["eventId"], {"value": 0.75})

    [record] = joined(live, tmp_path, {answer["eventId"]})
    assert record["slot"] == "hero" and record["chosen"] == answer["rewardActionId"]
    assert record["explicit_reward"] == 0.75 and record["reward"] == 0.75
    assert record["context"]["country"] == "JP" and "active" not in record  # not deferred: learned from
    assert dict(zip(record["candidates"], record["pmf"], strict=True)) == pytest.approx(
        {k: v for k, v in ranking.items() if v > 0}
    )


def test_deferred_events_are_learned_from_only_once_activated(
    live: LiveService, client: PersonalizerClient, tmp_path: Path
) -> None:
    ids = {f"shown-{time.time_ns()}", f"never-shown-{time.time_ns()}"}
    shown, hidden = sorted(ids, key=lambda x: x.startswith("never"))
    for event_id in (shown, hidden):
        answer = client.rank({"contextFeatures": [{"device": "pcvr"}], "actions": ACTIONS, "eventId": event_id,
                              "deferActivation": True})  # fmt: skip
        assert answer["eventId"] == event_id  # the client's own id comes back
        client.reward(event_id, {"value": 1.0})
    client.activate(shown)
    with pytest.raises(HttpResponseError) as reused:
        client.rank({"contextFeatures": [{"device": "pcvr"}], "actions": ACTIONS, "eventId": shown})
    assert reused.value.status_code == 400

    # The joined log is keyed by the service's ids: find the two pages by their deferred flag and reward.
    out = tmp_path / "all.jsonl"
    deadline = time.monotonic() + 30
    while True:
        live.storefront("export", "--out", str(out))
        deferred = [r for r in map(json.loads, out.read_text().splitlines()) if "active" in r]
        if len(deferred) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert sorted(r["active"] for r in deferred[-2:]) == [False, True]
    assert all(r["explicit_reward"] == 1.0 for r in deferred[-2:])  # kept in the log, learned only when active
    metrics = requests.get(f"{live.url}/metrics", timeout=10).text
    assert 'storefront_join_outcomes_total{outcome="inactive"}' in metrics
    assert 'storefront_activations_total{slot="hero"}' in metrics


def test_multi_slot_rank_and_reward(live: LiveService, client: PersonalizerClient, tmp_path: Path) -> None:
    answer = client.rank_multi_slot({
        "contextFeatures": [{"device": "quest"}],
        "actions": [*ACTIONS, {"id": "d", "features": [{"genre": "shooter"}]}],
        "slots": [{"id": "hero", "baselineAction": "a"}, {"id": "row-1", "baselineAction": "c"}],
    })  # fmt: skip
    chosen = {s["id"]: s["rewardActionId"] for s in answer["slots"]}
    assert set(chosen) == {"hero", "row-1"} and chosen["hero"] != chosen["row-1"]
    client.reward_multi_slot(answer["eventId"], {"reward": [{"slotId": "hero", "value": 1.0},
                                                            {"slotId": "row-1", "value": 0.5}]})  # fmt: skip
    records = joined(live, tmp_path, {answer["eventId"]})
    assert {r["slot"]: (r["chosen"], r["reward"]) for r in records} == {
        "hero": (chosen["hero"], 1.0), "row-1": (chosen["row-1"], 0.5)
    }  # fmt: skip


def test_an_ad_hoc_first_action_is_the_apprentices_baseline_and_comes_out_with_its_features(
    live: LiveService, client: PersonalizerClient, tmp_path: Path
) -> None:
    """The way apprentice-mode clients call: their own choice first, actions the catalog may not have."""
    news = {"id": f"news-{time.time_ns()}", "features": [{"genre": "sim", "publisher": "indie"}]}
    answer = client.rank({"contextFeatures": [{"device": "quest"}, {"country": "US"}], "actions": [news, *ACTIONS]})
    ranking = {r["id"]: r["probability"] for r in answer["ranking"]}
    assert ranking[news["id"]] == max(ranking.values()) == pytest.approx(0.8)  # the hero's exploration is 0.2
    client.reward(answer["eventId"], {"value": 1.0})
    [record] = joined(live, tmp_path, {answer["eventId"]})
    assert record["actions"] == {news["id"]: {"publisher": "indie", "features": {"genre": "sim"}}}
    assert record["explanation"].removeprefix("explore; ") == "baseline" and record["explicit_reward"] == 1.0
    metrics = requests.get(f"{live.url}/metrics", timeout=10).text
    [count] = re.findall(r"^storefront_personalizer_adhoc_actions_total (\S+)$", metrics, re.M)
    assert float(count) >= 1


def test_a_wrong_key_is_refused_and_the_configuration_reads(live: LiveService) -> None:
    wrong = PersonalizerClient(live.url, AzureKeyCredential("sk_not_a_key_of_this_store"))
    with wrong, pytest.raises(ClientAuthenticationError):
        wrong.rank({"contextFeatures": [{"device": "quest"}], "actions": ACTIONS})
    with PersonalizerAdministrationClient(live.url, AzureKeyCredential(BACKEND_KEY)) as admin:
        service = admin.get_service_configuration()
        assert service["rewardWaitTime"] == "PT2S" and service["learningMode"] == "Apprentice"
        assert admin.get_policy()["name"] == "storefront ladder"


def test_bad_requests_name_their_field(client: PersonalizerClient) -> None:
    cases = [
        (
            {"contextFeatures": [{"device": "quest"}], "actions": [{"id": "zz", "features": [{"price": -5}]}]},
            "actions[0].features.price",
        ),
        ({"contextFeatures": [{"device": "vive"}], "actions": ACTIONS}, "contextFeatures.device"),
        ({"contextFeatures": [{"country": "JP"}], "actions": ACTIONS}, "contextFeatures.device"),
    ]
    for body, field in cases:
        with pytest.raises(HttpResponseError) as caught:
            client.rank(body)
        assert caught.value.status_code == 400
        assert caught.value.response.json()["error"]["field"] == field
    with pytest.raises(HttpResponseError) as caught:
        client.reward("no-such-event", {"value": 1})
    assert caught.value.status_code == 404
    with pytest.raises(HttpResponseError) as caught:
        client.reward("no-such-event", {"value": 3})
    assert caught.value.status_code == 400
