"""``storefront evaluate``, ``replay`` and ``tree show|export``, run in process on a simulated joined log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bandit.config import load_config, parse_config
from service.cli import main

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "storefront.yaml"
ALT = ROOT / "examples" / "storefront-alt.yaml"


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 page views of the example config's rules on the vr-store scenario, as joined-log JSONL."""
    from simulator.runner import Arm, LogCollector, simulate
    from simulator.scenario import load_scenario

    config = load_config(CONFIG)
    collector = LogCollector()
    simulate(
        config, load_scenario("vr-store", config), 2000, 0, arms=[Arm("config", "config", config, learner=collector)]
    )
    path = tmp_path_factory.mktemp("log") / "events.jsonl"
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in collector.records))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_evaluate_prints_every_estimator_per_slot(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "evaluate", "--log", str(log), "--policy", str(ALT))
    assert status == 0
    for text in ("slot hero", "slot row-1", "slot row-2", "ips", "snips", "dm", "dr", "ESS", "max w", "lift"):
        assert text in out
    assert "pinned skipped" in out  # row-2 is pinned for French shoppers


def test_evaluate_counts_what_it_skips_by_reason(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [json.loads(line) for line in log.read_text().splitlines() if '"slot": "hero"' in line]
    own = {"news-1": {"publisher": "indie", "features": {}}}
    marked = [{**r, "actions": own} if i % 4 == 0 else {**r, "active": False} if i % 4 == 1 else r
              for i, r in enumerate(records)]  # fmt: skip
    path = tmp_path / "marked.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in marked))
    status, out, _ = _run(capsys, "evaluate", "--log", str(path), "--policy", str(ALT), "--json")
    assert status == 0
    report = json.loads(out)["slots"]["hero"]
    adhoc, inactive = len(records[0::4]), len(records[1::4])
    assert report["skipped"] == {"adhoc": adhoc, "inactive": inactive}
    assert report["estimates"][0]["n"] == len(records) - adhoc - inactive


def test_evaluate_json_and_uniform(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "evaluate", "--log", str(log), "--policy", "uniform", "--config", str(CONFIG),
                          "--slot", "hero", "--estimators", "ips,dr", "--json")  # fmt: skip
    assert status == 0
    report = json.loads(out)["slots"]["hero"]
    assert [e["estimator"] for e in report["estimates"]] == ["ips", "dr"]
    first = report["estimates"][0]
    assert first["max_weight"] == pytest.approx((1 / 31) / (0.1 / 30), rel=1e-6)
    assert first["unsupported_mass"] == 0.0
    assert report["lift_vs_logged"][0]["estimator"] == "ips"


def test_evaluate_the_logging_policy_gives_back_the_logged_mean(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "evaluate", "--log", str(log), "--policy", str(CONFIG), "--estimators", "ips",
                          "--json")  # fmt: skip
    report = json.loads(out)["slots"]["hero"]
    assert report["estimates"][0]["value"] == pytest.approx(report["logged_mean"], abs=1e-9)
    assert report["estimates"][0]["ess"] == pytest.approx(report["n"])


def test_unsupported_mass_is_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {"slot": "hero", "context": {"device": "quest"}, "candidates": ["beat-saber", "moss"],
              "chosen": "beat-saber", "propensity": 1.0, "pmf": [1.0, 0.0], "reward": 1.0}  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "reward": 0.0}) + "\n")
    status, out, _ = _run(capsys, "evaluate", "--log", str(path), "--policy", "uniform", "--estimators", "ips")
    assert status == 0
    assert "50.00% of its probability on items the log never showed" in out


def test_a_bad_log_is_refused_line_by_line(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_text().splitlines()[:5]
    bad = json.loads(lines[1])
    bad["propensity"] = 0
    missing = json.loads(lines[3])
    del missing["propensity"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), lines[2], json.dumps(missing), lines[4]]) + "\n")
    status, _, err = _run(capsys, "evaluate", "--log", str(path), "--policy", "uniform", "--estimators", "ips")
    assert status == 1
    assert f"{path}:2: propensity: must be > 0" in err
    assert f"{path}:4: propensity: missing" in err


def test_replay_shows_each_rule(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "replay", str(log), "--config", str(ALT), "--slot", "hero")
    assert status == 0
    assert "the new favourite differs from the logged choice" in out
    for rule in ("germany-sims", "france-adventure", "brazil-free", "default"):
        assert rule in out


def test_replay_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "replay", str(log), "--config", str(ALT), "--slot", "hero", "--json")
    hero: dict[str, Any] = json.loads(out)["slots"]["hero"]
    assert sum(r["rounds"] for r in hero["rules"]) == hero["n"]
    assert 0 < hero["favourite_differs_from_logged"] < 1


def test_tree_show_and_export_load_back_as_rules(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, shown, _ = _run(capsys, "tree", "show", "hero", "--log", str(log), "--config", str(CONFIG))
    assert status == 0
    assert shown.startswith("# Learned tree")
    out = tmp_path / "rules.yaml"
    status, _, err = _run(capsys, "tree", "export", "hero", "--out", str(out), "--log", str(log), "--config",
                          str(CONFIG))  # fmt: skip
    assert status == 0 and "wrote the tree of slot hero" in err
    assert out.read_text() == shown
    merged = parse_config(with_exported_slot(CONFIG, out.read_text()))
    hero = merged.slot("hero")
    assert hero.tier == "rules" and hero.exploration == load_config(CONFIG).slot("hero").exploration
    assert hero.default


def test_tree_show_from_redis(storage: Any, monkeypatch: pytest.MonkeyPatch, redis_url: str, log: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from bandit.eventlog.jsonl import read_joined
    from bandit.learners.tree import train_tree

    monkeypatch.setenv("STOREFRONT_REDIS_PREFIX", storage.prefix)
    argv = ["tree", "show", "hero", "--config", str(CONFIG), "--redis-url", redis_url]
    status, _, err = _run(capsys, *argv)
    assert status == 1 and "no tree yet" in err
    config = load_config(CONFIG)
    snapshot = train_tree(config, "hero", [r for r in read_joined(log) if r["slot"] == "hero"])
    state = {
        "kind": "storefront.ladder.v1",
        "slot": "hero",
        "stage": "shadow",
        "incumbent": {"tier": "rules", "snapshot": None},
        "challenger": {"tier": "tree", "snapshot": snapshot},
    }
    storage.client.hset(f"{storage.prefix}ladder:hero", mapping={"state": json.dumps(state), "rev": 1})
    status, out, _ = _run(capsys, *argv)
    assert status == 0
    assert snapshot["version"] in out


def with_exported_slot(config_path: str | Path, exported_yaml: str) -> str:
    """The config's YAML text with its slot replaced by the exported one (to check it loads back as rules)."""
    import yaml

    data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    (slot,) = yaml.safe_load(exported_yaml)
    old = next(s for s in data["slots"] if s["name"] == slot["name"])
    merged = {**{k: v for k, v in old.items() if k not in ("rules", "default", "tier")}, **slot}
    data["slots"] = [merged if s is old else s for s in data["slots"]]
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
