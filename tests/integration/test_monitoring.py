"""Every dashboard query and alert expression against a real Prometheus scraping a live service and learner.

The topology of docker-compose.yml on loopback: `storefront serve --no-learner` (two gunicorn workers), a
separate `storefront learn --metrics-port`, and Debian's Prometheus scraping both every second with the alert
rules loaded.  Simulated shoppers rank and reward over HTTP until the hero's ladder has trained a tree and
gated it; an operator rolls the gradient slot back.  Then every panel query (variables substituted), every
annotation, recording rule and alert expression must return data, promtool must accept the config, the rules
and both scrapes, and `storefront report` must draw the key panels.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from dashboards import panels
from dashboards.build import ALERTS_FILE
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LiveService, free_port, start_service, stop_service
from tests.support import keyed_session

pytestmark = pytest.mark.integration

TOKEN = "monitoring-admin-token"
SETUP_HINT = "run .ci/setup-system.sh as root (it installs Debian's prometheus package; CI runs it)"
RATE = "20s"


def monitored_config(tmp: Path) -> Path:
    """The test store with a hero that escalates within a minute (a cap on its publishers) and a gradient row."""
    config = yaml.safe_load(STORE_CONFIG.read_text())
    hero, row = config["slots"][0], config["slots"][1]
    hero["escalation"] = {"mode": "auto", "tiers": ["tree"], "min_events": 150, "retrain_every": 250,
                          "guardrail_min_events": 50}  # fmt: skip
    hero["tree"] = {"min_leaf": 20, "max_depth": 2}
    hero["exposure"] = {"max_share": 0.6, "window": 50}
    row["tier"] = "gradient"
    path = tmp / "store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Stack:
    api: LiveService
    learner: subprocess.Popen[bytes]
    learner_url: str
    prometheus: subprocess.Popen[bytes]
    prometheus_url: str
    prometheus_config: Path
    tmp: Path


def _shopper(url: str, stop: threading.Event, seed: int) -> None:
    """Ranks pages and clicks/buys with item- and country-dependent odds; now and then a bad request."""
    rng = random.Random(seed)
    session = keyed_session()
    liked = {"US": "c", "DE": "e", "JP": "b"}
    n = 0
    while not stop.is_set():
        country = rng.choice(["US", "DE", "JP"])
        body = {"context": {"device": rng.choice(["quest", "pcvr"]), "country": country}}
        page = session.post(f"{url}/v1/rank", json=body, timeout=10).json()
        for slot in page["slots"]:
            if slot["item"] is None:
                continue
            p = 0.5 if slot["item"] == liked[country] else 0.1
            if rng.random() < p:
                reward = {"event_id": page["event_id"], "slot": slot["slot"], "event": "click"}
                session.post(f"{url}/v1/reward", json=reward, timeout=10)
                if rng.random() < 0.3:
                    buy = {**reward, "event": "purchase", "revenue": round(rng.uniform(5, 40), 2)}
                    session.post(f"{url}/v1/reward", json=buy, timeout=10)
        n += 1
        if n % 25 == 0:
            session.post(f"{url}/v1/rank", json={"context": {}}, timeout=10)  # 400: device is required
        time.sleep(0.01)


def _learner_metric(stack_url: str, name: str) -> bool:
    try:
        return name in requests.get(f"{stack_url}/metrics", timeout=2).text
    except requests.RequestException:
        return False


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.fail(f"prometheus/promtool not on PATH: {SETUP_HINT}")
    tmp = tmp_path_factory.mktemp("monitoring")
    config = monitored_config(tmp)
    os.environ["STOREFRONT_ADMIN_TOKEN"] = TOKEN
    try:
        api = start_service(tmp, config, "--no-learner")
    finally:
        del os.environ["STOREFRONT_ADMIN_TOKEN"]
    learner_port = free_port()
    learner = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "learn", str(config), "--data-dir", str(tmp / "data"),
         "--interval", "0.2", "--join-grace", "0.2", "--metrics-port", str(learner_port)],
        env=api.env, stdout=(tmp / "learn.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    learner_url = f"http://127.0.0.1:{learner_port}"
    prom_port = free_port()
    api_target = api.url.removeprefix("http://")
    prom_config = tmp / "prometheus.yml"
    shutil.copy(ALERTS_FILE, tmp / "alerts.yml")
    scrape = [("storefront-api", api_target), ("storefront-learner", f"127.0.0.1:{learner_port}")]
    settings = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in scrape],
    }
    prom_config.write_text(yaml.safe_dump(settings))
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=(tmp / "prometheus.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    stack = Stack(api, learner, learner_url, prometheus, f"http://127.0.0.1:{prom_port}", prom_config, tmp)
    try:
        _wait(lambda: _learner_metric(learner_url, "storefront_learner"), 30, "the learner's /metrics")
        stop = threading.Event()
        shoppers = [threading.Thread(target=_shopper, args=(api.url, stop, seed)) for seed in range(3)]
        for thread in shoppers:
            thread.start()
        try:
            # The hero trains a tree, shadows it and the gate looks at it (its estimates become gauges).
            _wait(lambda: _learner_metric(learner_url, "storefront_gate_estimate{"), 150, "the hero's first gate")
            admin = {"Authorization": f"Bearer {TOKEN}"}
            response = requests.post(f"{api.url}/v1/admin/slots/row-1/rollback", headers=admin, timeout=10)
            assert response.status_code == 200, response.text  # the gradient row falls back to rules
            time.sleep(6)  # a few more scrapes and rule evaluations with traffic flowing
        finally:
            stop.set()
            for thread in shoppers:
                thread.join()
        yield stack
    finally:
        for process in (prometheus, learner):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        stop_service(api)


def instant(stack: Stack, expr: str) -> list[dict[str, object]]:
    response = requests.get(f"{stack.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def _expressions() -> list[tuple[str, str]]:
    out = []
    for board in panels.DASHBOARDS:
        for panel in board.panels:
            for query in panel.queries:
                out.append((f"{board.uid} / {panel.title} / {query.legend}", query.expr))
        for annotation in board.annotations:
            out.append((f"{board.uid} / annotation {annotation.name}", annotation.expr))
    for alert in panels.ALERTS:
        out.append((f"alert {alert.name} (left side)", alert.lhs))
        if not alert.rhs.replace(".", "", 1).isdigit():
            out.append((f"alert {alert.name} (right side)", alert.rhs))
    for rule in panels.RECORDINGS:
        out.append((f"recording {rule.record}", rule.record))
    return out


def test_every_panel_annotation_and_alert_expression_returns_data(stack: Stack) -> None:
    empty = []
    for name, expr in _expressions():
        # "All", and two values picked in the menus (Grafana writes a multi-value regex as (a|b)).
        for slot, tier in ((".*", ".*"), ("(hero|row-1)", "(rules|tree)")):
            query = panels.substitute(expr, slot=slot, tier=tier, rate_interval=RATE)
            if not instant(stack, query):
                empty.append(f"{name} [slot={slot}, tier={tier}]: {query}")
    assert not empty, "no data for:\n" + "\n".join(empty)


def test_the_ladder_moved_and_the_rollback_shows(stack: Stack) -> None:
    transitions = {
        (str(r["metric"]["slot"]), str(r["metric"]["transition"]))  # type: ignore[index]
        for r in instant(stack, "storefront_ladder_transitions_total > 0")
    }
    assert ("hero", "trained") in transitions
    assert ("row-1", "fallback") in transitions
    gate = instant(stack, 'storefront_gate_effective_sample_size{slot="hero"}')
    assert gate and float(gate[0]["value"][1]) > 0  # type: ignore[index]


def test_promtool_accepts_the_config_the_rules_and_both_scrapes(stack: Stack) -> None:
    for args in (["check", "config", str(stack.prometheus_config)], ["check", "rules", str(ALERTS_FILE)],
                 ["test", "rules", str(ALERTS_FILE.parent / "alerts.test.yml")]):  # fmt: skip
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=ALERTS_FILE.parent)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    for url in (f"{stack.api.url}/metrics", f"{stack.learner_url}/metrics"):
        text = requests.get(url, timeout=10).text
        done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, f"promtool check metrics on {url}:\n{done.stdout}{done.stderr}"


def test_the_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    """dashboards/prometheus/prometheus.yml as compose mounts it, with the rule file where it would be."""
    text = (ALERTS_FILE.parent / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in text
    shutil.copy(ALERTS_FILE, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/alerts.yml", "alerts.yml"))
    done = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_report_draws_the_key_panels_with_data(stack: Stack, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "report", "--prometheus", stack.prometheus_url, "--out", str(out),
         "--range", "5m", "--rate-interval", RATE],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    images = sorted(out.glob("*.png"))
    expected = sum(p.report for board in panels.DASHBOARDS for p in board.panels)
    assert len(images) == expected, done.stdout
    for image in images:
        with Image.open(image) as picture:
            colours = picture.convert("RGB").getcolors(maxcolors=1 << 16)
        # A plotted line adds many colours (antialiased) beyond the white figure, the axes and the text.
        assert colours is None or len(colours) > 50, f"{image.name} looks empty"
    assert "no data" not in (out / "report.md").read_text()


def test_report_says_no_data_per_panel_when_the_span_has_none(stack: Stack, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "report", "--prometheus", stack.prometheus_url, "--out",
         str(tmp_path / "old"), "--range", "10m", "--end", str(time.time() - 86400)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if " / " in line]
    assert lines and all(line.endswith("no data") for line in lines), done.stdout
