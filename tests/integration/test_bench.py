"""`storefront bench rank` end to end: it starts the service and the twin, loads both, and reports sane numbers.

The speed targets are not asserted here (machines differ; the command prints them); what is asserted is
that the benchmark ran what it claims, that the service answered every request with a 2xx, and that the
report has the documented shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE_CONFIG

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "rank", "--config", str(EXAMPLE_CONFIG), "--requests", "2000",
         "--rounds", "1", "--warmup", "1", "--rate-duration", "2", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_both_targets_answered_every_request(report: dict) -> None:
    assert set(report["targets"]) == {"twin", "rank"}
    for name, target in report["targets"].items():
        assert target["runs"] == 1
        assert target["requests"] > 100, name
        assert target["non_2xx"] == 0 and target["socket_errors"] == 0, (name, target)
        assert target["rps"] > 0
        assert 0 < target["p50_ms"] <= target["p99_ms"] < 10_000
        run = target["each"][0]
        assert run["requests"] == target["requests"] and run["seconds"] > 0
    assert report["problems"] == []


def test_ratio_and_fixed_rate_are_reported(report: dict) -> None:
    twin, rank = report["targets"]["twin"], report["targets"]["rank"]
    assert report["ratio"] == pytest.approx(rank["rps"] / twin["rps"], abs=1e-3)
    fixed = report["fixed_rate"]
    assert fixed["rate"] == 1000 and fixed["duration"] == 2
    assert fixed["requests"] >= 1000  # every request due in the window was sent, however slowly
    assert fixed["non_2xx"] == 0 and fixed["errors"] == 0
    assert 0 < fixed["p50_ms"] <= fixed["p99_ms"] <= fixed["max_ms"]
    assert fixed["achieved_rps"] > 0
    assert set(report["targets_met"]) == {"ratio", "p99_at_rate"}
    assert report["ok"] == (all(report["targets_met"].values()) and not report["problems"])


def test_same_gunicorn_settings_for_both(report: dict) -> None:
    gunicorn = report["gunicorn"]
    assert gunicorn["workers"] >= 1 and gunicorn["worker_class"] in ("sync", "gthread")
    assert report["loader"] in ("wrk", "python")
