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
         "--rounds", "1", "--warmup", "1", "--rate-duration", "2", "--tiers", "rules,gradient", "--items", "40",
         "--json"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_tier_was_measured_on_the_wider_catalog_and_answered_every_request(report: dict) -> None:
    assert list(report["tiers"]) == ["rules", "gradient"] and report["items"] == 40
    for tier, measured in report["tiers"].items():
        assert set(measured["targets"]) == {"twin", "rank"}
        for name, target in measured["targets"].items():
            assert target["runs"] == 1
            assert target["requests"] > 100, (tier, name)
            assert target["non_2xx"] == 0 and target["socket_errors"] == 0, (tier, name, target)
            assert target["rps"] > 0
            assert 0 < target["p50_ms"] <= target["p99_ms"] < 10_000
            run = target["each"][0]
            assert run["requests"] == target["requests"] and run["seconds"] > 0
    assert report["problems"] == []


def test_ratio_and_fixed_rate_are_reported(report: dict) -> None:
    for measured in report["tiers"].values():
        twin, rank = measured["targets"]["twin"], measured["targets"]["rank"]
        assert measured["ratio"] == pytest.approx(rank["rps"] / twin["rps"], abs=1e-3)
        fixed = measured["fixed_rate"]
        assert fixed["rate"] == 1000 and fixed["duration"] == 2
        assert fixed["requests"] >= 1000  # every request due in the window was sent, however slowly
        assert fixed["non_2xx"] == 0 and fixed["errors"] == 0
        assert 0 < fixed["p50_ms"] <= fixed["p99_ms"] <= fixed["p999_ms"] <= fixed["max_ms"]
        assert fixed["achieved_rps"] > 0
        assert set(measured["targets_met"]) == {"ratio", "p99_at_rate"}
    met = all(all(m["targets_met"].values()) for m in report["tiers"].values())
    assert report["ok"] == (met and not report["problems"])


def test_same_gunicorn_settings_for_both_and_the_versions_are_printed(report: dict) -> None:
    gunicorn = report["gunicorn"]
    assert gunicorn["workers"] >= 1 and gunicorn["worker_class"] in ("sync", "gthread")
    assert report["loader"] in ("wrk", "python")
    assert report["cpus"] >= 1 and set(report["versions"]) == {"python", "flask", "gunicorn", "numpy"}
