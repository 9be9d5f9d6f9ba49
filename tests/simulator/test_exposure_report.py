"""The report's exposure inequality: the Gini coefficient, the windowed share, a capped run beside an uncapped one."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bandit.config import StoreConfig, parse_config
from simulator.report import build_report, exposure_inequality, gini, report_markdown
from simulator.runner import EXPOSURE_WINDOW, ArmStats, simulate
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "storefront.yaml"
HERO_CAP = re.compile(r"^    exposure: .*\n", re.MULTILINE)


# ------------------------------------------------------------------ Gini


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 1, 1, 1], 0.0),
        ([0, 0, 0, 1], 0.75),  # one of n has everything: (n − 1) / n
        ([0, 1], 0.5),
        ([1, 2, 3], 2 / 9),  # Σ|xi − xj| = 8 over ordered pairs; 2 n² mean = 36
        ([3, 1, 2], 2 / 9),  # order does not matter
        ([10, 20, 30], 2 / 9),  # nor scale
        ([0.4, 0.3, 0.2, 0.1], 0.25),
        ([5], 0.0),
        ([], 0.0),
        ([0, 0, 0], 0.0),
    ],
)
def test_gini_of_known_inputs(values: list[float], expected: float) -> None:
    assert gini(values) == pytest.approx(expected, abs=1e-12)


def test_gini_matches_the_mean_absolute_difference_definition() -> None:
    rng = random.Random(3)
    for _ in range(50):
        x = [rng.random() * rng.choice([0, 1, 1, 5]) for _ in range(rng.randint(1, 12))]
        n, total = len(x), sum(x)
        direct = sum(abs(a - b) for a in x for b in x) / (2 * n * total) if total else 0.0
        assert gini(x) == pytest.approx(direct, abs=1e-12)


# ------------------------------------------------------------------ the windowed share in ArmStats


def brute_force_max(sequence: list[str], window: int) -> int:
    return max(max(Counter(sequence[s : s + window]).values()) for s in range(len(sequence) - window + 1))


@pytest.mark.parametrize("window", [10, 37, 200])
def test_arm_stats_largest_windowed_count_matches_brute_force(window: int) -> None:
    publishers = ("p1", "p1", "p2", "p3", "p4", "p3")
    stats = ArmStats(2, len(publishers), publishers=publishers, windows=(window, EXPOSURE_WINDOW))
    rng = random.Random(window)
    shown: list[str] = []
    for n in range(2000):
        # drifting preferences, so the busiest window is somewhere in the middle
        weights = [1 + 8 * (700 < n < 900), 1, 3 if n < 1000 else 1, 1, 1 + 5 * (n > 1500), 1]
        item = rng.choices(range(len(publishers)), weights)[0]
        stats.record(0, 0, item, "rules", 0.0, 0.0, 0)
        shown.append(publishers[item])
        if n + 1 < window:
            assert stats.window_max[0] == -1 and stats.window_top[0] is None  # no full window yet
        assert len(stats._recent[0]) <= window  # memory: one window, not the sequence
    assert stats.window_max[0] == brute_force_max(shown, window)
    top = stats.window_top[0]
    assert top is not None
    assert max(shown[s : s + window].count(top) for s in range(len(shown) - window + 1)) == stats.window_max[0]
    assert stats.window_max[1] == -1  # slot 1 served nothing


def test_windowed_share_is_none_without_publishers_or_a_full_window() -> None:
    stats = ArmStats(1, 2)  # as HTTP mode's live arm builds it
    stats.record(0, 0, 1, "rules", 0.0, 0.0, 0)
    (entry,) = exposure_inequality(stats, ["p1", "p2"], {}, ["hero"]).values()
    assert entry["max_share"] == 1.0 and entry["max_share_publisher"] == "p2" and entry["gini"] == 0.5
    assert entry["window"] is None and entry["max_window_share"] is None and entry["cap"] is None


# ------------------------------------------------------------------ a capped run against an uncapped one


def example_configs() -> tuple[StoreConfig, StoreConfig]:
    """The example's hero capped at 40% of 2,000 impressions, and without a cap (whichever the file has)."""
    text = EXAMPLE.read_text()
    uncapped = HERO_CAP.sub("", text, count=1) if HERO_CAP.search(text) else text
    anchor = "    exploration: 0.10\n"
    assert uncapped.count(anchor) == 1
    capped = uncapped.replace(anchor, anchor + "    exposure: {max_share: 0.4, window: 2000}\n")
    return parse_config(capped, str(EXAMPLE)), parse_config(uncapped, str(EXAMPLE))


@pytest.fixture(scope="module")
def capped_run() -> dict[str, Any]:
    capped, uncapped = example_configs()
    assert capped.slots[0].exposure is not None and uncapped.slots[0].exposure is None
    scenario = load_scenario("vr-store", capped)
    result = simulate(capped, scenario, events=5000, seed=7, peers=(), extra_configs={"uncapped": uncapped})
    return build_report(result)


def test_capped_hero_never_exceeds_its_share_in_any_window_while_the_uncapped_run_does(
    capped_run: dict[str, Any],
) -> None:
    inequality = capped_run["exposure_inequality"]
    for arm in ("oracle", "config", "uniform"):  # every arm runs the config's constraints
        hero = inequality[arm]["hero"]
        assert hero["cap"] == {"max_share": 0.4, "window": 2000} and hero["window"] == 2000
        assert hero["max_window_share"] is not None and hero["max_window_share"] <= 0.4
        assert hero["max_share"] <= 0.4
    assert inequality["config"]["hero"]["max_window_share"] == 0.4  # the cap binds
    free = inequality["uncapped"]["hero"]
    assert free["cap"] is None and free["window"] == 2000
    assert free["max_window_share"] > 0.4 and free["max_window_publisher"] == "beat-games"
    assert inequality["config"]["hero"]["gini"] < free["gini"]
    rows = inequality["config"]["row-1"]
    assert rows["cap"] is None and rows["window"] == EXPOSURE_WINDOW


def test_report_has_the_reward_vs_exposure_table(capped_run: dict[str, Any]) -> None:
    md = report_markdown(capped_run, [])
    table = md[md.index("## Reward vs exposure inequality") :].split("\n## ")[0]
    assert "| policy | mean expected | % of oracle | hero Gini | hero max share | max share in 2,000 | cap |" in table
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"oracle", "config", "uncapped", "uniform"}
    assert rows["config"].endswith("| 40.0% of 2,000 |") and "(beat-games)" in rows["config"]
    assert rows["uncapped"].endswith("| – |")
    config = capped_run["policies"]["config"]
    assert f"| config | {config['mean_expected_reward']:.4f} | {config['pct_of_oracle']:.1f} |" in rows["config"]
