"""``storefront bench evaluate`` at a small size: the log it generates is a real joined log, and it measures both
children (the anchor and ``storefront evaluate`` with all four estimators)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bandit.eventlog.jsonl import read_joined
from simulator.bench.evaluate import run_bench_evaluate


def test_bench_evaluate_logs_the_hero_and_times_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "joined.jsonl"
    args = argparse.Namespace(records=1500, seed=3, keep=str(log), json=True, timeout=300.0)
    assert run_bench_evaluate(args) == 0
    result = json.loads(capsys.readouterr().out)
    records = read_joined(log)  # every line passes the joined log's own checks
    assert len(records) == result["records"] == 1500 and {r["slot"] for r in records} == {"hero"}
    assert result["estimators"] == ["dm", "dr", "ips", "snips"]
    for child in ("anchor_read_only", "evaluate"):
        assert result[child]["seconds"] > 0 and result[child]["peak_bytes"] > 10 << 20
    assert result["ratio_seconds"] > 1  # fitting a reward model costs more than reading


def test_an_evaluate_past_its_timeout_is_stopped_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(records=3000, seed=3, keep=None, json=True, timeout=0.3)
    assert run_bench_evaluate(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluate"]["timed_out"] and result["evaluate"]["seconds"] < 5 and result["estimators"] == []
