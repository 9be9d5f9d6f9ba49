"""Escalation end to end: `storefront serve` follows a slot's ladder without restarting, one admin call rolls back."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from bandit.config import load_config
from bandit.escalation.state import SlotState
from service.storage import LadderWrite, RedisStorage
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LiveService, start_service, stop_service
from tests.support import KEY_HEADERS

pytestmark = pytest.mark.integration

TOKEN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def manual_config(tmp_path: Path) -> Path:
    """The test store, with the hero escalating in manual mode (no training within the test: retrain_every)."""
    anchor = "  - name: hero\n    exploration: 0.2\n"
    text = STORE_CONFIG.read_text()
    assert anchor in text
    path = tmp_path / "store.yaml"
    path.write_text(
        text.replace(anchor, anchor + "    escalation: {mode: manual, retrain_every: 1000000, ramp: [1.0]}\n")
    )
    return path


def served_tiers(live: LiveService, n: int = 8) -> set[str]:
    tiers = set()
    for _ in range(n):
        body = {"context": {"device": "quest", "country": "DE"}, "slots": ["hero"]}
        response = requests.post(f"{live.url}/v1/rank", headers=KEY_HEADERS, json=body, timeout=10)
        assert response.status_code == 200, response.text
        tiers.add(response.json()["slots"][0]["tier"])
    return tiers


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def test_tier_follows_the_ladder_and_rolls_back_with_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = manual_config(tmp_path)
    config = load_config(config_path)
    monkeypatch.setenv("STOREFRONT_ADMIN_TOKEN", TOKEN)
    # Sync workers, so that requests spread over the two (a gthread worker may take every request of a burst);
    # they need not alternate, so the stage is then checked on several answers.
    live = start_service(tmp_path, config_path, "--threads", "1", redis_url=os.environ.get("REDIS_URL"))
    try:
        state_file = json.loads((live.data_dir / "serve.json").read_text())
        storage = RedisStorage.from_url(state_file["redis_url"], state_file["prefix"])
        assert served_tiers(live) == {"rules"}

        # a challenger that passed its gate and waits for an operator (as the learner leaves it in manual mode)
        snapshot = {
            "kind": "storefront.tree.v1", "slot": "hero", "version": "tree-e2e000001", "config_version": config.version,
            "rules": [{"name": "leaf-1", "when": {"country": "DE"}, "items": ["c"]}], "default": ["a"],
        }  # fmt: skip
        waiting = SlotState("hero", stage="approval", challenger={"tier": "tree", "snapshot": snapshot},
                            next_train_at=10**6, last_gate={"passed": True, "reason": "seeded"})  # fmt: skip
        storage.save_ladders([LadderWrite("hero", waiting.to_json(), storage.ladder_revs(["hero"])["hero"])])
        wait_until(
            lambda: requests.get(f"{live.url}/v1/admin/slots/hero", headers=AUTH, timeout=10).json()["stage"]
            == "approval",
            10, "the seeded state",
        )  # fmt: skip
        assert served_tiers(live) == {"rules"}  # in approval the challenger is only shadowed

        assert requests.post(f"{live.url}/v1/admin/slots/hero/promote", timeout=10).status_code == 401
        promoted = requests.post(f"{live.url}/v1/admin/slots/hero/promote", headers=AUTH, json={"reason": "e2e"},
                                 timeout=10)  # fmt: skip
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["status"]["stage"] == "ramp" and promoted.json()["status"]["share"] == 1.0
        # every worker picks the new state up within its once-a-second check, no restart
        wait_until(lambda: served_tiers(live) == {"tree"}, 10, "both workers to serve the tree")

        def ramping() -> bool:
            # Eight ranks in a row may all reach the same worker: the other shows the new stage within its check.
            hero = requests.get(f"{live.url}/v1/slots", headers=KEY_HEADERS, timeout=10).json()["slots"][0]
            return bool(hero["stage"] == "ramp" and hero["challenger_version"] == "tree-e2e000001")

        for _ in range(8):  # every worker, whichever answers
            wait_until(ramping, 10, "the slot status to show the ramp")

        rolled = requests.post(f"{live.url}/v1/admin/slots/hero/rollback", headers=AUTH, timeout=10)
        assert rolled.status_code == 200, rolled.text
        wait_until(lambda: served_tiers(live) == {"rules"}, 10, "both workers back on rules")
        history = requests.get(f"{live.url}/v1/admin/slots/hero", headers=AUTH, timeout=10).json()["history"]
        assert [h["transition"] for h in history][:2] == ["rollback", "ramp"]
        metrics = requests.get(f"{live.url}/metrics", timeout=10).text
        assert 'storefront_ladder_transitions_total{slot="hero",transition="rollback"} 1.0' in metrics
        assert live.process.poll() is None  # the same service all along
        assert "transition=rollback" in live.log() and "Traceback" not in live.log()
        storage.client.close()
    finally:
        stop_service(live)
