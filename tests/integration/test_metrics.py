"""Prometheus metrics of a live service: `storefront serve` with 2 gunicorn workers, the learner and Redis.

One service for the module, on its own copy of the test config (the reload test edits it) and on the
embedded Redis (the last test stops it).  The ``sent`` fixture drives known traffic through both workers,
waits for the learner to join all of it, and keeps what each counter must read: the counts are exact,
merged by prometheus-client's multiprocess mode over the two workers' files and the learner's.

Tests run in file order and build on each other's state; later ones compare deltas.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bandit.config import load_config
from service import metrics
from tests.conftest import STORE_CONFIG
from tests.integration.conftest import LiveService, free_port, start_service, stop_service
from tests.support import KEY_HEADERS, LIMITED_KEY

pytestmark = pytest.mark.integration

# tests/fixtures/store.yaml
WINDOW = 2.0
WEIGHTS = {"click": 1.0, "add_to_cart": 2.0, "purchase": 5.0}
REVENUE_WEIGHT = 0.1
SLOTS = ("hero", "row-1", "row-2")
CONTEXTS = [{"device": "quest", "country": "US"}, {"device": "quest", "country": "JP"}, {"device": "pcvr"}]
PAGES = 240  # full pages ranked by 8 client threads: enough that both workers take a share
SETUP_HINT = "run .ci/setup-system.sh as root (it installs Debian's prometheus package; CI runs it)"
# Families that only appear once their event happened: a config reload, a storage fault.
FAULT_ONLY = {"storefront_config_reloads", "storefront_storage_errors", "storefront_rewards_queued"}
# The write-behind's losses and replays: never in this module (Redis stays down once stopped; the fault tests
# of tests/integration/test_faults.py see them).
WRITER_FAULTS = {"storefront_decision_log_dropped", "storefront_rewards_dropped", "storefront_rewards_replayed"}
# Exported only for slots with a publisher exposure cap (this store has none), and for pages ranked through the
# Personalizer API with deferred activation (tests/integration/test_personalizer_sdk.py reads it).
CAP_ONLY = {"storefront_exposure_cap_share", "storefront_activations"}
# Exported once a slot escalates; every slot of this store stays on rules
# (see tests/service/learner/test_ladder_runner.py).
LADDER_ONLY = {
    "storefront_ladder_transitions",
    "storefront_ladder_stage",
    "storefront_snapshot_errors",
    "storefront_challenger_errors",
    # the learner's gradient gauges: once a slot climbs to (or starts on) the gradient tier
    "storefront_gradient_learned_records",
    "storefront_gradient_trust_region_steps",
    "storefront_gradient_kl",
    "storefront_gradient_nan_halts",
    # the gate's latest look and the snapshots' times (tests/integration/test_monitoring.py sees them)
    "storefront_gate_estimate",
    "storefront_gate_relative_lift",
    "storefront_gate_effective_sample_size",
    "storefront_gate_events",
    "storefront_gate_max_importance_weight",
    "storefront_gate_unsupported_mass",
    "storefront_gate_timestamp_seconds",
    "storefront_snapshot_timestamp_seconds",
}
EVENT_ID = re.compile(r"^[0-9a-f]{27}([0-9a-f]{16})?$")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --------------------------------------------------------------------------- helpers


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for_samples(
    live: LiveService,
    predicate: Callable[[Samples], bool],
    timeout: float,
    what: str,
    poke: Callable[[], object] | None = None,
) -> Samples:
    """Scrape (after ``poke()``, if given) until ``predicate`` holds for the samples; return them."""
    last: Samples = {}

    def check() -> bool:
        nonlocal last
        if poke is not None:
            poke()
        last = scrape(live)
        return predicate(last)

    wait_until(check, timeout, what)
    return last


def exposition(live: LiveService) -> str:
    response = requests.get(f"{live.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return response.text


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(live: LiveService) -> Samples:
    return parse(exposition(live))


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def by_labels(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for (n, lbls), v in samples.items():
        if n == name:
            labels = dict(lbls)
            out[tuple(labels[k] for k in keys)] = out.get(tuple(labels[k] for k in keys), 0.0) + v
    return out


def declared_families() -> set[str]:
    """Names of every metric declared in service/metrics.py (counters without ``_total``, as parsed)."""
    return {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def rank(live: LiveService, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{live.url}/v1/rank", headers=KEY_HEADERS, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def post_reward(live: LiveService, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{live.url}/v1/reward", headers=KEY_HEADERS, json=body, timeout=10)


# ---- processes, from /proc (psutil is not a dependency)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                out.append(int(entry.name))
    return sorted(out)


def child_running(live: LiveService, marker: str) -> int:
    [pid] = [p for p in children(live.process.pid) if marker in cmdline(p)]
    return pid


def gunicorn_master(live: LiveService) -> int:
    return child_running(live, "gunicorn")


def worker_pids(live: LiveService) -> list[int]:
    return children(gunicorn_master(live))


def file_samples(path: Path) -> Samples:
    """The samples one process wrote to its multiprocess file."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for metric in MultiProcessCollector.merge([str(path)])
        for s in metric.samples
    }


# --------------------------------------------------------------------------- fixtures


@dataclass
class Sent:
    """What the test sent, hence what every counter must read."""

    config_version: str = ""
    ranks: int = 0
    event_ids: set[str] = field(default_factory=set)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    unfilled: Counter[str] = field(default_factory=Counter)
    rewards: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    posts: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    late: int = 0
    unknown: int = 0
    # Every slot decision (event id, slot): its tier and the reward the join must give it.
    reward_of: dict[tuple[str, str], float] = field(default_factory=dict)
    tier_of: dict[tuple[str, str], str] = field(default_factory=dict)
    rewarded: set[tuple[str, str]] = field(default_factory=set)  # decisions with an accepted reward
    joined: list[dict[str, Any]] = field(default_factory=list)  # the exported joined log
    limited_pages: int = 0  # full pages ranked with the rate-limited key

    def page(self, page: dict[str, Any]) -> dict[str, Any]:
        assert page["logged"] is True
        self.ranks += 1
        self.config_version = page["config_version"]
        self.event_ids.add(page["event_id"])
        for slot in page["slots"]:
            if slot["item"] is None:
                self.unfilled[slot["slot"]] += 1
                continue
            self.decisions[slot["slot"], slot["tier"]] += 1
            self.tier_of[page["event_id"], slot["slot"]] = slot["tier"]
            self.reward_of[page["event_id"], slot["slot"]] = 0.0  # reward.default
        return page

    def expect_reward(self, event_id: str, slot: str, kind: str, amount: float) -> None:
        self.posts["accepted"] += 1
        self.rewards[slot, self.tier_of[event_id, slot], kind] += 1
        self.reward_of[event_id, slot] += amount
        self.rewarded.add((event_id, slot))

    def expect_error(self, outcome: str, code: str) -> None:
        self.posts[outcome] += 1
        self.errors["reward", code] += 1


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "store.yaml"
    shutil.copyfile(STORE_CONFIG, path)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, config_path: Path) -> Iterator[LiveService]:
    # Always the embedded Redis (not $REDIS_URL): the last test stops it.
    # Sync workers: each takes one request at a time, so both serve a share (the per-process tests need that; a
    # gthread worker may take every connection of a short burst).
    service = start_service(tmp_path_factory.mktemp("metrics"), config_path, "--threads", "1")
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def sent(live: LiveService, tmp_path_factory: pytest.TempPathFactory) -> Sent:
    sent = Sent()
    late_page = sent.page(rank(live, {"context": {"device": "pcvr"}, "slots": ["hero"]}))
    late_after = time.time() + WINDOW + 0.3  # the server stamped the event before this

    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda i: rank(live, {"context": CONTEXTS[i % 3]}), range(PAGES)))
    for page in pages:
        sent.page(page)

    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    for i, page in enumerate(pages):
        eid = page["event_id"]
        if i % 3 == 0:
            first.append({"event_id": eid, "slot": "hero", "event": "click"})
            sent.expect_reward(eid, "hero", "click", WEIGHTS["click"])
        if i % 9 == 0:
            again.append({"event_id": eid, "slot": "hero", "event": "click"})
            sent.posts["duplicate"] += 1
        if i % 5 == 0:
            first.append({"event_id": eid, "slot": "row-1", "event": "add_to_cart"})
            sent.expect_reward(eid, "row-1", "add_to_cart", WEIGHTS["add_to_cart"])
        if i % 7 == 0:
            first.append({"event_id": eid, "slot": "hero", "event": "purchase", "revenue": 12.5})
            sent.expect_reward(eid, "hero", "purchase", WEIGHTS["purchase"] + REVENUE_WEIGHT * 12.5)
        if i % 11 == 0:
            amount = -0.5 if i % 22 == 0 else 2.0  # negative explicit rewards exist: _sum may go down
            first.append({"event_id": eid, "slot": "row-2", "reward": amount})
            sent.expect_reward(eid, "row-2", "reward", amount)
    for batch in (first, again):  # duplicates strictly after the first posts
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda body: post_reward(live, body), batch))
        assert all(r.status_code == 202 for r in statuses), [r.text for r in statuses if r.status_code != 202]
    assert [r.json()["status"] for r in statuses] == ["duplicate"] * len(again)

    # A page where only the hero slot can be filled: row-1 and row-2 go unfilled.
    partial = sent.page(rank(live, {"context": {"device": "quest"}, "candidates": ["a"]}))
    assert [s["item"] for s in partial["slots"]] == ["a", None, None]
    # Unknown: an id this service never issued, and a slot the page did not fill.
    assert post_reward(live, {"event_id": "not-an-id", "slot": "hero", "event": "click"}).status_code == 404
    sent.expect_error("unknown", "unknown_event")
    hero_only = sent.page(rank(live, {"context": {"device": "quest"}, "slots": ["hero"]}))
    response = post_reward(live, {"event_id": hero_only["event_id"], "slot": "row-2", "event": "click"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_decision"
    sent.expect_error("unknown", "unknown_decision")
    # Invalid: an event type the config does not know.
    response = post_reward(live, {"event_id": hero_only["event_id"], "slot": "hero", "event": "wishlist"})
    assert response.status_code == 400
    sent.expect_error("invalid", "unknown_event_type")
    # Late: the window of the first page has closed (waiting for a time, not for a condition).
    time.sleep(max(0.0, late_after - time.time()))
    response = post_reward(live, {"event_id": late_page["event_id"], "slot": "hero", "event": "click"})
    assert response.status_code == 410, response.text
    sent.expect_error("late", "reward_window_closed")
    sent.late, sent.unknown = 1, 2
    # Keys: a page without one is refused; a key over its limit (two a minute) is held back with a 429.
    refused = requests.post(f"{live.url}/v1/rank", json={"context": {"device": "quest"}}, timeout=10)
    assert refused.status_code == 401
    sent.errors["rank", "unauthorized"] += 1
    limited = {"Authorization": f"Bearer {LIMITED_KEY}"}
    for _ in range(5):  # two fit in a minute's window; a third is refused (a fourth if the minute turned between)
        answer = requests.post(
            f"{live.url}/v1/rank", headers=limited, json={"context": {"device": "quest"}}, timeout=10
        )
        if answer.status_code == 429:
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
            break
        sent.page(answer.json())
        sent.limited_pages += 1
    else:
        pytest.fail("the limited key was never held back")
    sent.errors["rank", "rate_limited"] += 1

    # The learner joins every decision once its window closes; its counters land after each commit.
    total = sum(sent.decisions.values())
    wait_for_samples(
        live,
        lambda s: (
            value(s, "storefront_join_outcomes_total", outcome="joined")
            + value(s, "storefront_join_outcomes_total", outcome="defaulted")
            >= total
        ),
        30,
        f"the learner to join {total} decisions",
    )
    wait_for_samples(live, lambda s: value(s, "storefront_learner_due_events") == 0, 10, "an empty due set")
    out = tmp_path_factory.mktemp("export") / "joined.jsonl"
    live.storefront("export", "--out", str(out))
    sent.joined = [json.loads(line) for line in out.read_text().splitlines()]
    return sent


# --------------------------------------------------------------------------- a. the exposition


def test_promtool_finds_no_problem(live: LiveService, sent: Sent) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(f"promtool is not installed: {SETUP_HINT}")
    text = exposition(live)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"promtool check metrics:\n{result.stdout}{result.stderr}"
    )


def test_every_family_appears(live: LiveService, sent: Sent) -> None:
    families = {f.name for f in text_string_to_metric_families(exposition(live))}
    missing = declared_families() - FAULT_ONLY - LADDER_ONLY - CAP_ONLY - WRITER_FAULTS - families
    assert not missing, f"declared in service/metrics.py but not exported: {sorted(missing)}"
    assert families <= declared_families(), "only the service's own metrics in multiprocess mode"


def test_joined_log_is_what_was_sent(sent: Sent) -> None:
    assert {(r["event_id"], r["slot"]) for r in sent.joined} == set(sent.reward_of)
    assert len(sent.joined) == len(sent.reward_of), "each decision joined exactly once"
    for record in sent.joined:
        key = record["event_id"], record["slot"]
        assert record["reward"] == pytest.approx(sent.reward_of[key]), key
        assert record["defaulted"] == (key not in sent.rewarded)


def test_counts_are_exact(live: LiveService, sent: Sent) -> None:
    samples = scrape(live)
    total = sum(sent.decisions.values())
    # Full pages (and those of the limited key), the late and hero-only pages, the partial page.
    assert total == (PAGES + sent.limited_pages) * len(SLOTS) + 1 + 1 + 1
    assert by_labels(samples, "storefront_decisions_total", "slot", "tier") == {k: float(v) for k, v in
                                                                                sent.decisions.items()}  # fmt: skip
    assert value(samples, "storefront_decisions_total") == total
    assert by_labels(samples, "storefront_unfilled_slots_total", "slot") == {("row-1",): 1.0, ("row-2",): 1.0}
    assert by_labels(samples, "storefront_rewards_total", "slot", "tier", "event") == {
        k: float(v) for k, v in sent.rewards.items()
    }
    assert by_labels(samples, "storefront_reward_posts_total", "outcome") == {
        (k,): float(v) for k, v in sent.posts.items()
    }
    assert by_labels(samples, "storefront_http_errors_total", "endpoint", "code") == {
        k: float(v) for k, v in sent.errors.items()
    }
    assert by_labels(samples, "storefront_auth_refused_total", "action", "reason") == {("rank", "missing"): 1.0}
    assert by_labels(samples, "storefront_rate_limited_total", "key") == {("limited",): 1.0}
    rewarded = len(sent.rewarded)
    assert by_labels(samples, "storefront_join_outcomes_total", "outcome") == {
        ("joined",): rewarded,
        ("defaulted",): total - rewarded,
        ("late",): sent.late,
        ("unknown",): sent.unknown,
    }
    # Every successful rank is timed once; the buckets are cumulative and end at the count.
    assert value(samples, "storefront_rank_latency_seconds_count") == sent.ranks
    assert value(samples, "storefront_rank_latency_seconds_bucket", le="+Inf") == sent.ranks
    assert 0 < value(samples, "storefront_rank_latency_seconds_sum") < sent.ranks * 1.0


def test_joined_reward_matches_the_export(live: LiveService, sent: Sent) -> None:
    samples = scrape(live)
    count: Counter[tuple[str, str]] = Counter()
    total: dict[tuple[str, str], list[float]] = {}
    for record in sent.joined:
        count[record["slot"], record["tier"]] += 1
        total.setdefault((record["slot"], record["tier"]), []).append(record["reward"])
    assert by_labels(samples, "storefront_joined_reward_count", "slot", "tier") == {
        k: float(v) for k, v in count.items()
    }
    got_sum = by_labels(samples, "storefront_joined_reward_sum", "slot", "tier")
    assert got_sum.keys() == total.keys()
    for key, rewards in total.items():
        assert got_sum[key] == pytest.approx(math.fsum(rewards), rel=1e-9, abs=1e-9), key
    assert any(r < 0 for rewards in total.values() for r in rewards), "the traffic has a negative reward"


def test_gauges(live: LiveService, sent: Sent) -> None:
    samples = scrape(live)
    config = load_config(STORE_CONFIG)
    assert by_labels(samples, "storefront_slot_tier", "slot", "tier") == {(s, "rules"): 1.0 for s in SLOTS}
    assert by_labels(samples, "storefront_config_info", "store", "version") == {(config.name, sent.config_version): 1.0}
    assert sent.config_version == config.version
    assert value(samples, "storefront_learner_due_events") == 0
    last_run = value(samples, "storefront_learner_last_run_timestamp_seconds")
    assert time.time() - 10 < last_run <= time.time()


def test_counts_merge_both_workers_and_the_learner(live: LiveService, sent: Sent) -> None:
    """The totals above are sums over per-process files: both workers served, the learner joined."""
    metrics_dir = live.data_dir / "metrics"
    workers = worker_pids(live)
    learner = child_running(live, "service.cli learn")
    assert len(workers) == 2
    per_process = {pid: file_samples(metrics_dir / f"counter_{pid}.db") for pid in [*workers, learner]}
    for pid in workers:
        served = value(per_process[pid], "storefront_decisions_total")
        assert 0 < served < sum(sent.decisions.values()), f"worker {pid} served {served} decisions"
    assert value(per_process[learner], "storefront_decisions_total") == 0
    assert value(per_process[learner], "storefront_join_outcomes_total", outcome="joined") == len(sent.rewarded)
    assert sum(value(per_process[pid], "storefront_join_outcomes_total", outcome="late") for pid in workers) == 1
    everything = [str(p) for p in metrics_dir.glob("counter_*.db")]
    merged = {
        (s.name, frozenset(s.labels.items())): s.value
        for metric in MultiProcessCollector.merge(everything)
        for s in metric.samples
    }
    samples = scrape(live)
    assert {k: v for k, v in samples.items() if k[0].endswith("_total")} == merged
    summary = file_samples(metrics_dir / f"summary_{learner}.db")
    assert value(summary, "storefront_joined_reward_count") == len(sent.joined)


# --------------------------------------------------------------------------- c. label hygiene


TRANSITION_KINDS = {"canary", "trained", "no_change", "gate_wait", "rejected", "awaiting_approval", "ramp", "promoted",
                    "holdout", "rollback", "fallback", "freeze", "unfreeze", "train_skipped", "started",
                    "published"}  # fmt: skip


def test_no_label_is_an_item_or_event_id(live: LiveService, sent: Sent) -> None:
    config = load_config(STORE_CONFIG)
    item_ids = set(config.catalog.ids)
    allowed_names = {"slot", "tier", "event", "outcome", "endpoint", "code", "operation", "result", "store",
                     "version", "le", "status", "publisher", "to", "reason", "action", "key", "transition"}  # fmt: skip
    publishers = {item.publisher for item in config.catalog.items} | {"other"}
    samples = scrape(live)
    assert samples
    for name, labels in samples:
        for label, label_value in labels:
            assert label in allowed_names, (name, label)
            assert label_value not in item_ids, f"{name}: label {label}={label_value!r} is an item id"
            assert label_value not in sent.event_ids, f"{name}: label {label}={label_value!r} is an event id"
            assert not EVENT_ID.match(label_value), f"{name}: label {label}={label_value!r} looks like an event id"
            if label == "slot":
                assert label_value in config.slot_names
            if label == "publisher":
                assert label_value in publishers
            if label == "key":  # a key's name from the keys file, never its secret
                assert label_value in {"tests", "page", "limited"}, label_value
            if label == "action":
                assert label_value in {"rank", "reward", "slots", "admin"}
            if label == "status":
                assert label_value.isdigit() and len(label_value) == 3
            if label == "transition":  # the ladder's kinds (the watched ones exist at 0 from the start)
                assert label_value in TRANSITION_KINDS, label_value


# --------------------------------------------------------------------------- b. a real Prometheus


@pytest.fixture
def prometheus(live: LiveService, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping the service every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"prometheus is not installed: {SETUP_HINT}")
    target = live.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: storefront\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, 30, "Prometheus to be ready")

        def target_up() -> bool:
            active = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return any(t["scrapeUrl"] == f"{live.url}/metrics" and t["health"] == "up" for t in active)

        wait_until(target_up, 20, f"the scrape target {target} to be up")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(prometheus: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector", body
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}


def test_real_prometheus_scrapes_the_service(live: LiveService, sent: Sent, prometheus: str) -> None:
    def settled(promql: str, expected: dict[tuple[tuple[str, str], ...], float]) -> None:
        # The first scrapes may predate the last join; poll until the stored samples agree.
        last: dict[Any, float] = {}

        def agrees() -> bool:
            nonlocal last
            last = query(prometheus, promql)
            return last.keys() == expected.keys() and all(math.isclose(last[k], v) for k, v in expected.items())

        deadline = time.monotonic() + 15
        while not agrees():
            assert time.monotonic() < deadline, f"{promql}: got {last}, expected {expected}"
            time.sleep(0.2)

    settled("sum(storefront_decisions_total)", {(): sum(sent.decisions.values())})
    joined_by_slot: Counter[str] = Counter(r["slot"] for r in sent.joined)
    settled(
        "sum by (slot) (storefront_joined_reward_count)",
        {(("slot", slot),): float(n) for slot, n in joined_by_slot.items()},
    )
    rewards: dict[tuple[str, str], list[float]] = {}
    for record in sent.joined:
        rewards.setdefault((record["slot"], record["tier"]), []).append(record["reward"])
    settled(
        "sum by (slot, tier) (storefront_joined_reward_sum) / sum by (slot, tier) (storefront_joined_reward_count)",
        {(("slot", s), ("tier", t)): math.fsum(r) / len(r) for (s, t), r in rewards.items()},
    )
    settled('sum(storefront_join_outcomes_total{outcome=~"late|unknown"})', {(): sent.late + sent.unknown})
    settled("sum(storefront_rank_latency_seconds_count)", {(): float(sent.ranks)})
    [p99] = query(prometheus, "histogram_quantile(0.99, sum by (le) (storefront_rank_latency_seconds_bucket))").values()
    assert 0 < p99 <= 1.0
    settled('sum by (job) (up{job="storefront"})', {(("job", "storefront"),): 1.0})


# --------------------------------------------------------------------------- d. a worker killed


def test_killed_worker_loses_and_doubles_nothing(live: LiveService, sent: Sent) -> None:
    metrics_dir = live.data_dir / "metrics"
    time.sleep(0.05)  # every worker's writer has ticked: the rank path's counters are in their files
    before = scrape(live)
    victim, survivor = worker_pids(live)
    assert (metrics_dir / f"gauge_livemax_{victim}.db").exists()
    victim_served = value(file_samples(metrics_dir / f"counter_{victim}.db"), "storefront_decisions_total")
    assert victim_served > 0

    os.kill(victim, signal.SIGKILL)
    # gunicorn reaps it (child_exit → mark_process_dead drops its live gauges) and boots a replacement.

    def replaced() -> list[int] | None:
        pids = worker_pids(live)
        return pids if victim not in pids and len(pids) == 2 else None

    [replacement] = set(wait_until(replaced, 20, "gunicorn to replace the killed worker")) - {survivor}
    wait_until(lambda: not (metrics_dir / f"gauge_livemax_{victim}.db").exists(), 10, "the dead worker's gauges")
    wait_until(lambda: (metrics_dir / f"gauge_livemax_{replacement}.db").exists(), 20, "the new worker to boot")

    after = scrape(live)
    counters = ("storefront_decisions_total", "storefront_rewards_total", "storefront_reward_posts_total",
                "storefront_join_outcomes_total", "storefront_rank_latency_seconds_count",
                "storefront_rank_latency_seconds_bucket", "storefront_joined_reward_count")  # fmt: skip
    for name in counters:
        assert by_labels(after, name) == by_labels(before, name), f"{name} changed when a worker died"
    # The dead worker's counts stay in the total; the live gauges are not summed over old and new workers.
    assert (metrics_dir / f"counter_{victim}.db").exists()
    assert by_labels(after, "storefront_slot_tier", "slot", "tier") == {(s, "rules"): 1.0 for s in SLOTS}
    assert value(after, "storefront_config_info", version=sent.config_version) == 1.0

    # Rank until the replacement has taken a share (its metric files exist before it accepts: a first round can
    # go to the survivor alone), then check that the totals count every rank exactly once.
    more = 0
    replacement_served = 0.0
    deadline = time.monotonic() + 20
    while replacement_served == 0 and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: rank(live, {"context": CONTEXTS[i % 3]}), range(60)))
        more += 60
        time.sleep(0.05)  # one writer tick
        counts = metrics_dir / f"counter_{replacement}.db"
        replacement_served = value(file_samples(counts), "storefront_decisions_total") if counts.exists() else 0.0
    assert replacement_served > 0, "the replacement worker took a share of the new ranks"
    final = scrape(live)
    assert value(final, "storefront_decisions_total") == value(before, "storefront_decisions_total") + more * 3
    assert value(final, "storefront_rank_latency_seconds_count") == (
        value(before, "storefront_rank_latency_seconds_count") + more
    )


def test_restarted_learner_keeps_counts_and_takes_over_gauges(live: LiveService, sent: Sent) -> None:
    metrics_dir = live.data_dir / "metrics"
    learner = child_running(live, "service.cli learn")
    # The gauge lags by one learner pass: only a pass that started after the previous test's ranks proves
    # that nothing is pending any more.
    waiting_since = time.time()
    before = wait_for_samples(
        live,
        lambda s: (
            value(s, "storefront_learner_due_events") == 0
            and value(s, "storefront_learner_last_run_timestamp_seconds") > waiting_since
        ),
        15,
        "the learner to catch up",
    )
    killed_at = time.time()
    os.kill(learner, signal.SIGKILL)

    def restarted() -> int | None:
        pids = [p for p in children(live.process.pid) if "service.cli learn" in cmdline(p)]
        return pids[0] if pids and pids[0] != learner else None

    new_learner = wait_until(restarted, 60, "storefront serve to restart the learner")
    page = rank(live, {"context": {"device": "quest"}})
    joined_before = value(before, "storefront_join_outcomes_total", outcome="defaulted")
    after = wait_for_samples(
        live,
        lambda s: (
            value(s, "storefront_join_outcomes_total", outcome="defaulted") == joined_before + len(page["slots"])
            and value(s, "storefront_learner_last_run_timestamp_seconds") > killed_at
            and value(s, "storefront_learner_due_events") == 0
        ),
        60,
        "the new learner to join the new page",
    )
    # The dead learner's counts stay; the new one's add to them; its gauges are the ones shown.
    assert (metrics_dir / f"counter_{learner}.db").exists() and (metrics_dir / f"counter_{new_learner}.db").exists()
    assert value(after, "storefront_join_outcomes_total", outcome="joined") == len(sent.rewarded)
    assert value(after, "storefront_joined_reward_count") == value(before, "storefront_joined_reward_count") + 3


# --------------------------------------------------------------------------- config reload


def test_config_reload_refused_then_applied(live: LiveService, sent: Sent, config_path: Path) -> None:
    original = config_path.read_text()
    old_version = sent.config_version
    workers = len(worker_pids(live))

    def touch_workers() -> None:
        # Each worker checks the file (at most every 2 s) on a request; keep both busy.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: requests.get(f"{live.url}/v1/slots", headers=KEY_HEADERS, timeout=5), range(16)))

    config_path.write_text(original + "\nnot_a_section: 1\n")
    samples = wait_for_samples(
        live,
        lambda s: value(s, "storefront_config_reloads_total", result="refused") == workers,
        20,
        "every worker to refuse the broken config",
        poke=touch_workers,
    )
    assert value(samples, "storefront_config_reloads_total", result="applied") == 0
    assert rank(live, {"context": {"device": "quest"}})["config_version"] == old_version
    assert value(samples, "storefront_config_info", version=old_version) == 1.0

    config_path.write_text(original.replace("exploration: 0.2\n", "exploration: 0.25\n", 1))
    new_version = load_config(config_path).version
    assert new_version != old_version
    samples = wait_for_samples(
        live,
        lambda s: value(s, "storefront_config_reloads_total", result="applied") == workers,
        20,
        "every worker to apply the new config",
        poke=touch_workers,
    )
    assert by_labels(samples, "storefront_config_info", "version") == {(old_version,): 0.0, (new_version,): 1.0}
    assert value(samples, "storefront_config_reloads_total", result="refused") == workers
    assert rank(live, {"context": {"device": "quest"}})["config_version"] == new_version


# --------------------------------------------------------------------------- Redis down (last: it stays down)


def test_redis_down_rules_keep_serving(live: LiveService, sent: Sent) -> None:
    redis_pid = child_running(live, "redis-server")
    os.kill(redis_pid, signal.SIGKILL)
    wait_until(lambda: redis_pid not in children(live.process.pid), 10, "redis-server to die")

    # The rules tier serves; the page is kept in the worker's spool (logged), the reward spooled too (queued).
    page = rank(live, {"context": {"device": "quest"}})
    assert page["logged"] is True
    assert [s["tier"] for s in page["slots"]] == ["rules"] * 3
    ready = requests.get(f"{live.url}/readyz", timeout=10)
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "degraded", body
    assert body["checks"]["storage"]["ok"] is False and body["checks"]["writer"]["spool_room"] is True
    assert requests.get(f"{live.url}/healthz", timeout=5).status_code == 200
    response = post_reward(live, {"event_id": page["event_id"], "slot": "hero", "event": "click"})
    assert response.status_code == 202 and response.json()["status"] == "queued", response.text

    samples = wait_for_samples(
        live,
        lambda s: (
            value(s, "storefront_storage_errors_total", operation="join") > 0
            and value(s, "storefront_decision_log_written_total", to="spool") >= 1
        ),
        20,
        "the learner to count a failed join pass and the page to be spooled",
    )
    # Each worker's decision writer counts the failure that tells it Redis is gone, once: the page's write, or its
    # heartbeat if that came first (then the page goes straight to the spool); the other worker may not have
    # tried Redis since. Not more: a degraded writer spools without trying again until its backoff retry.
    assert 1 <= value(samples, "storefront_storage_errors_total", operation="log_event") <= 2  # two workers
    assert value(samples, "storefront_storage_errors_total", operation="add_reward") <= 1  # 0: its worker knew
    assert value(samples, "storefront_rewards_queued_total", reason="storage_away") == 1
    assert value(samples, "storefront_storage_degraded") == 1 and value(samples, "storefront_spool_bytes") > 0
    families = {f.name for f in text_string_to_metric_families(exposition(live))}
    expected = declared_families() - LADDER_ONLY - CAP_ONLY - WRITER_FAULTS
    assert expected <= families, f"never exported: {sorted(expected - families)}"
