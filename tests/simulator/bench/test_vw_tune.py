"""`storefront bench vw-tune` and the tuned VW peer: settings from peers.json, costs in VW's range, the grid command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bandit.config import load_config
from bandit.learners.vw import ALGORITHMS, algorithm_settings, cost_range, describe_settings, vw_arguments
from simulator.baselines import PEERS_FILE, VWPeer, reward_bounds, tuned_settings, tuned_table
from simulator.bench.vw_tune import GRID, TUNING_SEED, choose, grid_points, late_share
from simulator.cli import main
from simulator.runner import BUCKETS, Arm, simulate, standard_arms
from simulator.scenario import load_scenario
from tests.conftest import EXAMPLE_CONFIG

CONFIG = load_config(EXAMPLE_CONFIG)
COMPARISON_SEEDS = {0, 7}  # the seeds docs/simulator.md and the product owner compare on


def test_the_tuned_table_covers_every_algorithm_and_says_how_it_was_made() -> None:
    table = json.loads(PEERS_FILE.read_text(encoding="utf-8"))
    assert table["seed"] == TUNING_SEED and table["seed"] not in COMPARISON_SEEDS
    assert "storefront bench vw-tune" in table["command"] and f"--seed {TUNING_SEED}" in table["command"]
    assert f"seed {TUNING_SEED}" in table["comment"]
    assert set(table["peers"]) == set(ALGORITHMS)
    for algorithm, entry in table["peers"].items():
        assert entry["settings"] in GRID[algorithm]  # a point the grid actually ran
        assert entry["arguments"] == vw_arguments(algorithm, entry["settings"], (-1.0, 0.0))
        ran = [row for row in table["grid"] if row["algorithm"] == algorithm]
        assert entry["score"] == max(row["score"] for row in ran)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_the_peer_takes_its_settings_from_the_tuned_table(algorithm: str) -> None:
    peer = VWPeer(CONFIG, algorithm, seed=3)
    expected = tuned_table()["peers"][algorithm]["settings"]
    assert peer.settings == expected == tuned_settings(algorithm) and peer.tuned
    low, high = reward_bounds(CONFIG)
    costs = cost_range(low, high - low)
    assert costs == (-1.0, 0.0)
    for learner in peer.learners.values():
        assert learner.settings == expected and learner.costs == costs
        assert learner.arguments == vw_arguments(algorithm, expected, costs)
    assert peer.describe().startswith(f"vw-{algorithm} (tuned: ") and peer.arguments in peer.describe()
    untuned = VWPeer(CONFIG, algorithm, settings={})
    assert untuned.arguments == vw_arguments(algorithm, None, costs) and not untuned.tuned
    peer.close()
    untuned.close()


def test_a_different_table_changes_the_peer(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps({"peers": {"squarecb": {"settings": {"gamma_scale": 42.0}}}}), encoding="utf-8")
    assert tuned_settings("squarecb", path) == {"gamma_scale": 42.0}
    assert tuned_settings("regcb", path) == {}
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"peers": {"regcb": {"settings": {"gamma_scale": 42.0}}}}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown VW setting 'gamma_scale' for regcb"):
        tuned_settings("regcb", wrong)


def test_the_peers_reward_interval_covers_every_reward_of_the_store() -> None:
    low, high = reward_bounds(CONFIG)
    events = CONFIG.reward.events
    top_price = max(float(item.features["price"]) for item in CONFIG.catalog.items)
    assert low == 0.0 and high >= sum(events.values()) + CONFIG.reward.revenue_weight * top_price
    peer = VWPeer(CONFIG, "squarecb", seed=1001)
    scenario = load_scenario("vr-store", CONFIG)
    arms = [Arm("vw-squarecb", "peer", CONFIG, learner=peer)]
    simulate(CONFIG, scenario, 1_500, 1001, arms=arms)
    assert sum(learner.learned_ for learner in peer.learners.values()) > 3_000
    assert all(learner.clipped_ == 0 for learner in peer.learners.values())  # no reward left VW's cost range


def test_choose_takes_the_best_score_per_algorithm_and_the_earlier_point_on_ties() -> None:
    rows: list[dict[str, Any]] = [
        {"algorithm": "squarecb", "settings": {"gamma_scale": 1.0}, "arguments": "a", "score": 50.0},
        {"algorithm": "squarecb", "settings": {"gamma_scale": 2.0}, "arguments": "b", "score": 61.0},
        {"algorithm": "squarecb", "settings": {"gamma_scale": 3.0}, "arguments": "c", "score": 61.0},
        {"algorithm": "epsilon", "settings": {"epsilon": 0.1}, "arguments": "d", "score": None},
        {"algorithm": "epsilon", "settings": {"epsilon": 0.2}, "arguments": "e", "score": 40.0},
    ]
    chosen = choose(rows)
    assert chosen["squarecb"]["settings"] == {"gamma_scale": 2.0} and chosen["squarecb"]["score"] == 61.0
    assert chosen["epsilon"]["settings"] == {"epsilon": 0.2}


def test_the_score_looks_only_at_the_last_fifth_of_the_run() -> None:
    oracle = np.ones((BUCKETS, 3))
    late = np.zeros((BUCKETS, 3))
    late[80:] = 0.5  # nothing for 80 % of the run, then half the oracle's
    late[80:, 0] = 1.0  # the first slot matches the oracle at the end
    result = SimpleNamespace(stats={"oracle": SimpleNamespace(expected=oracle), "peer": SimpleNamespace(expected=late)})
    assert late_share(result, "peer") == pytest.approx(100.0 * (1.0 + 0.5 + 0.5) / 3)  # type: ignore[arg-type]
    assert late_share(result, "peer", 0) == pytest.approx(100.0)  # type: ignore[arg-type]


def test_every_grid_point_is_a_valid_vw_setting() -> None:
    points = grid_points(list(GRID))
    assert len(points) == sum(len(g) for g in GRID.values()) and set(GRID) == set(ALGORITHMS)
    for algorithm, settings in points:
        algorithm_settings(algorithm, settings)
    assert grid_points(["regcb", "epsilon"], 1) == [("regcb", GRID["regcb"][0]), ("epsilon", GRID["epsilon"][0])]
    assert any(s.get("regcbopt") for a, s in points if a == "regcb")  # the optimistic variant is tried
    assert not standard_arms(CONFIG, 0, peers=(), include_config=False)[0].learner  # the oracle arm learns nothing


def test_bench_vw_tune_prints_the_grid_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "peers.json"
    argv = ["bench", "vw-tune", "--config", str(EXAMPLE_CONFIG), "--events", "1500", "--algorithms", "squarecb"]
    assert main([*argv, "regcb", "--points", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1,500 pages per grid point, seed 1001" in printed
    for algorithm in ("squarecb", "regcb"):
        assert f"{algorithm:<10} {describe_settings(GRID[algorithm][0])}" in printed  # one grid row each
    assert "chosen:" in printed and "--cb_explore_adf --squarecb --gamma_scale 100" in printed
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["seed"] == 1001 and record["events"] == 1500 and "--points 1" in record["command"]
    assert [row["algorithm"] for row in record["grid"]] == ["squarecb", "regcb"]
    for row in record["grid"]:
        assert 0.0 < row["score"] < 150.0 and row["clipped_rewards"] == 0
        assert f"{row['score']:.1f}" in printed
    assert set(record["peers"]) == {"squarecb", "regcb"}
    assert tuned_settings("regcb", out) == GRID["regcb"][0]  # the file is a peers table VWPeer can use
