"""Rank → reward → window closes → late reward refused → join, in process on a real Redis, with time moved, not slept.

The app and the joiner share one :class:`~service.clock.ManualClock`: the
reward window of the test store is 2 s, and the test never waits for it.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from bandit.config import StoreConfig
from service.clock import ManualClock, SystemClock
from service.http.app import create_app
from service.learner.joiner import Joiner
from service.storage import RedisStorage
from tests.conftest import STORE_CONFIG
from tests.support import TEST_SETTINGS, keyed

START = 1_790_000_000.0  # 2026-09-21, a fixed time: nothing here depends on when the test runs
WINDOW = 2.0  # tests/fixtures/store.yaml: reward.window


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def timed_client(storage: RedisStorage, clock: ManualClock) -> FlaskClient:
    app = create_app(STORE_CONFIG, storage=storage, settings=TEST_SETTINGS, clock=clock)
    return keyed(app.test_client())


def test_events_are_stamped_by_the_injected_clock(timed_client: FlaskClient, storage: RedisStorage) -> None:
    page = timed_client.post("/v1/rank", json={"context": {"device": "quest"}}).get_json()
    pending = storage.pending(page["event_id"])
    assert pending is not None
    assert pending.event["ts"] == START and pending.event["window_close"] == START + WINDOW


def test_a_reward_is_accepted_inside_the_window_late_after_it_and_joined_once(
    timed_client: FlaskClient, storage: RedisStorage, clock: ManualClock
) -> None:
    joiner = Joiner(storage, load_config_of(timed_client), grace=0.5, clock=clock)
    page = timed_client.post("/v1/rank", json={"context": {"device": "quest"}}).get_json()
    event_id = page["event_id"]
    clock.advance(WINDOW - 0.5)
    click = timed_client.post("/v1/reward", json={"event_id": event_id, "slot": "hero", "event": "click"})
    assert click.status_code == 202
    assert joiner.run_once().joined == 0  # the window is still open: nothing to join yet
    clock.advance(0.8)  # past the window, not yet past the joiner's grace
    late = timed_client.post("/v1/reward", json={"event_id": event_id, "slot": "row-1", "event": "click"})
    assert late.status_code == 410 and late.get_json()["error"]["code"] == "reward_window_closed"
    assert joiner.run_once().joined == 0  # the grace for clock skew between workers and the learner
    clock.advance(0.5)
    stats = joiner.run_once()
    assert (stats.joined, stats.defaulted) == (1, 2)  # the hero's click; row-1 and row-2 got the default
    records = {record["slot"]: record for _, record in storage.joined()}
    assert records["hero"]["reward"] == 1.0 and records["hero"]["joined_at"] == START + WINDOW + 0.8
    assert records["row-1"]["defaulted"] and records["row-1"]["reward"] == 0.0
    assert joiner.run_once().joined == 0  # joined once


def test_the_clocks_tell_time() -> None:
    clock = ManualClock(10.0)
    assert clock.advance(5) == clock.time() == 15.0
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    assert abs(SystemClock().time() - ManualClock().time()) < 5


def load_config_of(client: FlaskClient) -> StoreConfig:
    config: StoreConfig = client.application.extensions["storefront"].runtime.config
    return config
