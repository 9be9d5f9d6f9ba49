"""HTTP mode: the simulator drives a live `storefront serve` and ranks policies as in process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bandit.config import load_config
from simulator.http_driver import HTTPError, simulate_http
from simulator.report import build_report
from simulator.runner import simulate
from simulator.scenario import load_scenario
from tests.support import BACKEND_KEY, KEYS_ENV

ROOT = Path(__file__).resolve().parents[2]
VR_CONFIG = ROOT / "examples" / "storefront.yaml"

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`storefront serve` of the VR store on a free port (embedded Redis), stopped whatever happens."""
    tmp = tmp_path_factory.mktemp("sim-live")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env["STOREFRONT_API_KEYS"] = KEYS_ENV
    log = tmp / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", str(VR_CONFIG), "--bind", f"127.0.0.1:{port}",
         "--data-dir", str(tmp / "data"), "--workers", "2"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"storefront serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"storefront serve did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_http_mode_orders_policies_as_in_process(live: str) -> None:
    config = load_config(VR_CONFIG)
    scenario = load_scenario("vr-store", config)
    events = 1_500
    result = simulate_http(config, scenario, live, events, seed=7, peers=[], time_scale=0.0005, api_key=BACKEND_KEY)
    report = build_report(result)
    assert report["mode"] == "http" and report["order"] == ["oracle", "live", "config", "uniform"]
    expected = {name: p["mean_expected_reward"] for name, p in report["policies"].items()}
    live_arm = report["policies"]["live"]
    assert live_arm["decisions"] == report["policies"]["config"]["decisions"]
    assert set(report["timeline"]["policies"]["live"]["slots"]["hero"]["tier_share"]) == {"rules"}
    # same order as in process: oracle > config (live ≈ in process) > uniform
    in_process = build_report(simulate(config, scenario, events, seed=7, peers=[]))
    in_process_expected = {name: p["mean_expected_reward"] for name, p in in_process["policies"].items()}
    assert sorted(in_process_expected, key=in_process_expected.get) == ["uniform", "config", "oracle"]
    assert expected["oracle"] > expected["live"] > expected["uniform"]
    assert expected["live"] == pytest.approx(expected["config"], rel=0.08)  # only the sampling numbers differ
    # rewards were really posted and accepted; the realised reward tracks the expected one
    assert "accepted" in report["notes"][1] and live_arm["mean_reward"] > 0
    assert live_arm["mean_reward"] == pytest.approx(live_arm["mean_expected_reward"], rel=0.35)


def test_http_mode_reports_an_unreachable_service() -> None:
    config = load_config(VR_CONFIG)
    scenario = load_scenario("vr-store", config)
    with pytest.raises(HTTPError, match="cannot reach"):
        simulate_http(config, scenario, "http://127.0.0.1:9", 5, peers=[])


def test_http_mode_without_a_key_says_which_key_to_pass(live: str) -> None:
    config = load_config(VR_CONFIG)
    scenario = load_scenario("vr-store", config)
    with pytest.raises(HTTPError, match=r"answered 401.*--api-key"):
        simulate_http(config, scenario, live, 5, peers=[])
