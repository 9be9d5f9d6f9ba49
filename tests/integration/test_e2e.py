"""End to end over HTTP: a real gunicorn, a real Redis, the real learner, the real export command."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bandit.config import load_config
from service.http.ids import IdSigner
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LiveService, start_service, stop_service
from tests.support import KEY_HEADERS, keyed_session

pytestmark = pytest.mark.integration

WINDOW = 2.0  # tests/fixtures/store.yaml: reward.window


def rank(live: LiveService, body: dict, session: requests.Session | None = None) -> dict:
    if session is None:
        response = requests.post(f"{live.url}/v1/rank", headers=KEY_HEADERS, json=body, timeout=10)
    else:
        response = session.post(f"{live.url}/v1/rank", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def reward(live: LiveService, body: dict) -> requests.Response:
    return requests.post(f"{live.url}/v1/reward", headers=KEY_HEADERS, json=body, timeout=10)


def export(live: LiveService, tmp_path: Path) -> list[dict]:
    out = tmp_path / "events.jsonl"
    result = live.storefront("export", "--out", str(out))
    assert "joined record" in result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def wait_joined(live: LiveService, tmp_path: Path, event_ids: set[str], timeout: float = 30.0) -> list[dict]:
    """Export until every decision of ``event_ids`` is in the joined log (the learner runs on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in export(live, tmp_path) if r["event_id"] in event_ids]
        if {r["event_id"] for r in records} == event_ids or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def metric_value(live: LiveService, name: str, **labels: str) -> float:
    text = requests.get(f"{live.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def test_rank_reward_join_export(live: LiveService, tmp_path: Path) -> None:
    page = rank(live, {"context": {"device": "quest", "country": "JP"}})
    assert page["logged"] is True
    slots = {s["slot"]: s for s in page["slots"]}
    assert list(slots) == ["hero", "row-1", "row-2"]
    assert all(0 < s["propensity"] <= 1 for s in slots.values())
    hero_item = slots["hero"]["item"]
    event_id = page["event_id"]

    assert reward(live, {"event_id": event_id, "slot": "hero", "event": "click"}).status_code == 202
    response = reward(live, {"event_id": event_id, "slot": "hero", "event": "purchase", "revenue": 20})
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    again = reward(live, {"event_id": event_id, "slot": "hero", "event": "click"})
    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    assert reward(live, {"event_id": event_id, "slot": "row-1", "reward": 0.5}).status_code == 202

    records = {r["slot"]: r for r in wait_joined(live, tmp_path, {event_id})}
    assert set(records) == {"hero", "row-1", "row-2"}
    hero = records["hero"]
    assert hero["chosen"] == hero_item
    assert hero["reward"] == pytest.approx(1 + 5 + 0.1 * 20)  # click + purchase + revenue weight × revenue
    assert hero["outcomes"] == ["click", "purchase"] and hero["revenue"] == 20 and not hero["defaulted"]
    assert hero["propensity"] == pytest.approx(slots["hero"]["propensity"])
    assert math.isclose(sum(hero["pmf"]), 1.0, abs_tol=1e-9)
    assert hero["pmf"][hero["candidates"].index(hero_item)] == pytest.approx(hero["propensity"])
    assert hero["context"]["country"] == "JP" and hero["context"]["device"] == "quest"
    assert records["row-1"]["reward"] == 0.5 and records["row-1"]["explicit_reward"] == 0.5
    assert records["row-2"]["defaulted"] and records["row-2"]["reward"] == 0
    # Later slots exclude what earlier slots took: conditional candidate sets.
    assert hero_item not in records["row-1"]["candidates"]
    assert records["row-1"]["chosen"] not in records["row-2"]["candidates"]


def test_reward_after_window_is_late_and_not_joined(live: LiveService, tmp_path: Path) -> None:
    page = rank(live, {"context": {"device": "pcvr"}, "slots": ["hero"]})
    event_id = page["event_id"]
    late_before = metric_value(live, "storefront_join_outcomes_total", outcome="late")
    time.sleep(WINDOW + 0.3)
    response = reward(live, {"event_id": event_id, "slot": "hero", "event": "click"})
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "reward_window_closed"
    assert response.json()["error"]["field"] == "event_id"
    [record] = wait_joined(live, tmp_path, {event_id})
    assert record["defaulted"] and record["reward"] == 0 and record["outcomes"] == []
    assert metric_value(live, "storefront_join_outcomes_total", outcome="late") == late_before + 1
    # Still late (not unknown) once the learner has joined and deleted the event.
    assert reward(live, {"event_id": event_id, "slot": "hero", "event": "click"}).status_code == 410


def test_unknown_event_and_undecided_slot(live: LiveService) -> None:
    response = reward(live, {"event_id": "0" * 27, "slot": "hero", "event": "click"})
    # An id from 1970 is both unknown and "late"; a fresh-looking id not logged may be a page still in another
    # worker's write-behind or spool: queued (and dropped, counted unknown, if its page never comes).
    assert response.status_code in (404, 410)
    signer = IdSigner((live.data_dir / "id-secret").read_text().strip().encode(), load_config(STORE_CONFIG).name)
    fresh_unknown = signer.issue(time.time())  # signed with the store's secret (serve made it), never served
    response = reward(live, {"event_id": fresh_unknown, "slot": "hero", "event": "click"})
    assert response.status_code == 202 and response.json()["status"] == "queued"
    unsigned = fresh_unknown[:27]  # the same id without its signature (as ids were before they were signed)
    response = reward(live, {"event_id": unsigned, "slot": "hero", "event": "click"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_event"
    response = reward(live, {"event_id": "not-an-id", "slot": "hero", "event": "click"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_event"
    page = rank(live, {"context": {"device": "quest"}, "slots": ["hero"]})
    response = reward(live, {"event_id": page["event_id"], "slot": "row-2", "event": "click"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "unknown_decision", "field": "slot", "message": f"event {page['event_id']} did not fill slot 'row-2'",
    }  # fmt: skip


def test_served_shares_match_logged_propensities(live: LiveService, tmp_path: Path) -> None:
    """Over 10,000 ranks, each item's served count matches the sum of its logged probabilities.

    For item i the count is a sum of independent Bernoulli draws with the
    logged p_i of each page, so (observed - Σp_i) / sqrt(Σp_i(1-p_i)) is close
    to standard normal.  With ~20 (slot, item) pairs, |z| < 4.5 fails by chance
    with probability < 1e-4.  A sampler that ignored its own probabilities, or
    logged different ones than it served with, fails by tens of sigmas.
    """
    contexts = [
        {"device": "quest", "country": "US"},
        {"device": "quest", "country": "JP"},
        {"device": "pcvr", "country": "DE", "age": 30},
    ]
    bodies = [{"context": contexts[i % 3]} for i in range(10_000)]

    def call(chunk: list[dict]) -> list[str]:
        with keyed_session() as session:
            return [rank(live, body, session)["event_id"] for body in chunk]

    with ThreadPoolExecutor(8) as pool:
        ids = {event_id for chunk in pool.map(call, [bodies[i::8] for i in range(8)]) for event_id in chunk}
    assert len(ids) == 10_000
    records = wait_joined(live, tmp_path, ids, timeout=90)
    assert len(records) == 30_000

    expected: dict[tuple[str, str], float] = defaultdict(float)
    variance: dict[tuple[str, str], float] = defaultdict(float)
    observed: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        for item, p in zip(record["candidates"], record["pmf"], strict=True):
            expected[record["slot"], item] += p
            variance[record["slot"], item] += p * (1 - p)
        observed[record["slot"], record["chosen"]] += 1
        assert record["pmf"][record["candidates"].index(record["chosen"])] == pytest.approx(record["propensity"])
    z = {key: (observed[key] - expected[key]) / math.sqrt(variance[key]) for key in expected if variance[key] > 0}
    worst = max(z, key=lambda k: abs(z[k]))
    assert abs(z[worst]) < 4.5, f"{worst}: observed {observed[worst]}, expected {expected[worst]:.1f}"


def test_slots_endpoint_counts(live: LiveService) -> None:
    before = requests.get(f"{live.url}/v1/slots", headers=KEY_HEADERS, timeout=5).json()
    rank(live, {"context": {"device": "quest"}})
    # The counts are in Redis once the worker's write-behind flushed (a few milliseconds).
    deadline = time.monotonic() + 5
    while True:
        after = requests.get(f"{live.url}/v1/slots", headers=KEY_HEADERS, timeout=5).json()
        done = all(
            a["counts"]["decisions"] > b["counts"]["decisions"]
            for b, a in zip(before["slots"], after["slots"], strict=True)
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [s["slot"] for s in after["slots"]] == ["hero", "row-1", "row-2"]
    for b, a in zip(before["slots"], after["slots"], strict=True):
        assert a["counts"]["decisions"] == b["counts"]["decisions"] + 1
        assert a["tier"] == "rules" and a["config_version"] == after["config_version"]


def test_serve_makes_its_keys_and_the_page_key_ranks_and_clicks_while_server_keys_stay_out_of_urls(
    tmp_path: Path,
) -> None:
    """`storefront serve` with no keys in its environment: it makes a backend and a browser key in its data folder;
    `storefront keys show` prints them; a page's browser key (in the URL, as a beacon sends it) ranks and clicks,
    and the click is joined; a request without a key, or a backend key in a URL, is refused."""
    live = start_service(tmp_path, STORE_CONFIG, keys=None)
    try:
        backend = live.storefront("keys", "show", "backend").stdout.strip()
        browser = live.storefront("keys", "show", "browser").stdout.strip()
        assert backend.startswith("sk_") and browser.startswith("pk_")
        body = {"context": {"device": "quest"}}
        assert requests.post(f"{live.url}/v1/rank", json=body, timeout=10).status_code == 401
        assert requests.post(f"{live.url}/v1/rank?key={backend}", json=body, timeout=10).status_code == 401
        page = requests.post(f"{live.url}/v1/rank?key={browser}", json=body, timeout=10)
        assert page.status_code == 200, page.text
        event_id = page.json()["event_id"]
        click = {"event_id": event_id, "slot": "hero", "event": "click"}
        assert requests.post(f"{live.url}/v1/reward?key={browser}", json=click, timeout=10).status_code == 202
        buy = {"event_id": event_id, "slot": "hero", "event": "purchase", "revenue": 20}
        assert requests.post(f"{live.url}/v1/reward?key={browser}", json=buy, timeout=10).status_code == 403
        auth = {"Authorization": f"Bearer {backend}"}
        assert requests.post(f"{live.url}/v1/reward", json=buy, headers=auth, timeout=10).status_code == 202
        records = wait_joined(live, tmp_path, {event_id})
        hero = next(r for r in records if r["slot"] == "hero")
        assert set(hero["outcomes"]) >= {"click", "purchase"}, hero
        assert "API keys in" in live.log()  # serve said where the keys are
    finally:
        stop_service(live)
