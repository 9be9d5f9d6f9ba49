"""`storefront bench quality --quick` (the CI form), `bench learn`, `bench simulate`: they run and report.

The numbers themselves are the benchmarks' business (see docs/ladder.md for the full run); these tests check
that every arm ran on the same pages, that the arithmetic of the summary is right, that each target is
reported, and that the quick form stays within its CI budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.bench.quality import QUICK, after_the_shift, checks, summarise
from simulator.cli import main
from simulator.runner import BUCKETS

QUICK_BUDGET_SECONDS = 180  # the bound for --quick; measured 42 s on this 2-core machine (4× margin)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("quality") / "quality.json"
    assert main(["bench", "quality", "--quick", "--out", str(out)]) == 0
    return json.loads(Path(out).read_text())


@pytest.mark.slow
def test_the_quick_form_runs_every_arm_on_the_same_pages_within_its_budget(quick: dict) -> None:
    assert quick["seconds"] <= QUICK_BUDGET_SECONDS
    assert quick["events"] == QUICK["events"] and list(quick["scenarios"]) == QUICK["scenarios"]
    (run,) = quick["runs"]
    arms = set(run["arms"])
    assert {"oracle", "uniform", "rules", "tree", "ladder", "gradient", "vw-squarecb", "ladder-cap"} <= arms
    assert {a["pages"] for a in run["arms"].values()} == {QUICK["events"]}
    # the per-bucket series the drift check reads (vr-store has no drift: an empty list, not a missing key)
    assert len(run["bucket_hours"]) == BUCKETS and run["drift"] == []
    for arm in run["arms"].values():
        assert np.array(arm["buckets"]).shape == (BUCKETS, len(run["slots"]))
        assert np.sum(arm["buckets"], axis=0) == pytest.approx(arm["whole"], rel=1e-6, abs=0.01)
    # The oracle is the best arm on every slot; uniform the worst of the learned ones here.
    oracle = np.array(run["arms"]["oracle"]["whole"])
    for name, arm in run["arms"].items():
        assert np.all(np.array(arm["whole"]) <= oracle + 1e-9), name
    assert "gamma_scale" in run["arms"]["vw-squarecb"]["settings"]


@pytest.mark.slow
def test_every_target_is_reported_met_or_missed(quick: dict) -> None:
    targets = [c["target"] for c in quick["checks"]]
    assert any("≥ 95% of the oracle" in t for t in targets)
    assert any("above the best VW peer" in t for t in targets)
    assert any("each rung pays" in t for t in targets)
    assert any("40% cap" in t for t in targets)
    assert all(c["met"] in (True, False) for c in quick["checks"])
    cap = next(c for c in quick["checks"] if "40% cap" in c["target"])
    assert cap["met"], cap  # the cap is enforced in the served probabilities: it holds in every window


def _run(scenario: str, seed: int, sums: dict[str, tuple[list[float], list[float]]]) -> dict:
    return {"scenario": scenario, "seed": seed, "events": 1000, "slots": ["hero", "row"],
            "arms": {name: {"whole": whole, "last": last, "window_max_share": [None, None]}
                     for name, (whole, last) in sums.items()}}  # fmt: skip


def test_the_summary_divides_by_the_oracle_on_the_same_pages_and_gives_t_intervals() -> None:
    runs = [
        _run("s", 1, {"oracle": ([10, 10], [2, 2]), "rules": ([5, 8], [1, 1.6]), "ladder": ([9, 9], [2, 1.8])}),
        _run("s", 2, {"oracle": ([20, 10], [4, 2]), "rules": ([10, 8], [2, 1.6]), "ladder": ([19, 9], [4, 1.9])}),
    ]
    summary = summarise(runs)["s"]["arms"]
    assert summary["rules"]["whole"]["hero"]["mean"] == pytest.approx(50.0)
    assert summary["ladder"]["last"]["hero"]["mean"] == pytest.approx(100.0)
    page = summary["ladder"]["whole"]["page"]  # 18/20 and 28/30
    assert page["mean"] == pytest.approx((90.0 + 28 / 30 * 100) / 2)
    half = 12.706 * np.std([90.0, 28 / 30 * 100], ddof=1) / np.sqrt(2)
    assert page["high"] - page["mean"] == pytest.approx(half)
    verdicts = {c["target"]: c["met"] for c in checks(runs, summarise(runs), [])}
    assert verdicts["s: ladder hero, last 20% ≥ 95% of the oracle"] is True
    assert verdicts["s: ladder page, last 20% ≥ 90% of the oracle"] is True


@pytest.mark.slow
def test_bench_learn_and_simulate_print_their_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "learn", "--events", "4000", "--calls", "300"]) == 0
    out = capsys.readouterr().out
    assert "gradient learner:" in out and "bare VW learn loop:" in out and "ratio gradient / VW:" in out
    assert "scoring a slot of 50 candidates" in out
    assert main(["bench", "simulate", "--events", "2000", "--gradient-events", "2000", "--vw-events", "0"]) == 0
    out = capsys.readouterr().out
    assert "rules tier:" in out and "gradient tier (hero, row-1, row-2" in out


SERVES = {"promoted": "tree", "rollback": "rules", "fallback": "rules"}  # who serves after each, unless given


def _drift_run(ladder: list[float], transitions: list[tuple], shift: float = 40.0) -> dict:
    """Ten buckets of 10 h, a shift at ``shift`` h; the rules earn 1.0 per bucket on the hero, the ladder ``ladder``.

    ``transitions``: (hour, transition) or (hour, transition, the tier that serves after it), for the hero.
    """
    rules = [[1.0, 1.0] for _ in range(10)]
    moves = [{"hour": t[0], "slot": "hero", "transition": t[1], "version": None,
              "serving": t[2] if len(t) > 2 else SERVES[t[1]]} for t in transitions]  # fmt: skip
    return {"scenario": "drift", "seed": 1, "events": 1000, "slots": ["hero", "row"],
            "bucket_hours": [10.0 * b for b in range(10)],
            "drift": [{"hour": shift, "kind": "shift", "name": "tastes-turn"},
                      {"hour": 50.0, "kind": "launch", "name": "a-launch"}],
            "arms": {"rules": {"buckets": rules},
                     "ladder": {"buckets": [[x, 1.0] for x in ladder], "transitions": moves}}}  # fmt: skip


@pytest.mark.parametrize(
    ("ladder", "transitions", "met", "left", "vs_rules"),
    [
        # worse than the rules from the shift (buckets 4 and 5), rolled back at 60 h: the guardrail did its job
        ([1.1] * 4 + [0.8, 0.9] + [1.0] * 4, [(20.0, "promoted"), (60.0, "rollback")], True, "rollback", 85.0),
        # the same, the slot falling back to its rules
        ([1.1] * 4 + [0.8, 0.9] + [1.0] * 4, [(20.0, "promoted"), (60.0, "fallback")], True, "fallback", 85.0),
        # the same, replaced by a promoted challenger at 60 h
        (
            [1.1] * 4 + [0.8, 0.9] + [1.2] * 4,
            [(20.0, "promoted"), (60.0, "promoted", "gradient")],
            True,
            "promoted",
            85.0,
        ),
        # a rollback that drops a canary beside the tree leaves the tree serving: not an exit
        ([1.1] * 4 + [0.9] * 6, [(20.0, "promoted"), (45.0, "rollback", "tree")], False, None, 90.0),
        # worse, and rolled back only 55 h after the shift: too late
        ([1.1] * 4 + [0.9] * 6, [(20.0, "promoted"), (95.0, "rollback")], False, "rollback", 90.0),
        # worse and kept to the end: missed
        ([1.1] * 4 + [0.9] * 6, [(20.0, "promoted")], False, None, 90.0),
        # worse for the 48 h after the shift: a later gain (the last bucket) does not hide it
        ([1.1] * 4 + [0.8] * 5 + [3.0], [(20.0, "promoted")], False, None, 80.0),
        # not made worse by the shift: nothing had to go, so the check says nothing
        ([1.1] * 10, [(20.0, "promoted")], None, None, 110.0),
    ],
)
def test_after_the_drift_a_tier_made_worse_than_the_rules_must_leave_service(
    ladder: list[float], transitions: list[tuple], met: bool | None, left: str | None, vs_rules: float
) -> None:
    run = _drift_run(ladder, transitions)
    (hero,) = after_the_shift(run, "ladder") or []  # the row had no promotion: not followed
    assert (hero["slot"], hero["tier"], hero["serving_since"]) == ("hero", "tree", 20.0)
    assert (hero["left"] or {}).get("by") == left
    assert hero["vs_baseline"] == pytest.approx(vs_rules)
    verdict = next(c for c in checks([run], {}, []) if "after the drift, ladder" in c["target"])
    assert verdict["met"] is met, verdict


def test_a_shift_inside_a_bucket_counts_the_buckets_it_overlaps() -> None:
    # shift at 45 h, rollback at 62 h: buckets 40-50, 50-60 and 60-70 overlap the span
    run = _drift_run([1.0] * 4 + [0.7, 0.8, 0.9] + [1.0] * 3, [(20.0, "promoted"), (62.0, "rollback")], shift=45.0)
    (hero,) = after_the_shift(run, "ladder") or []
    assert hero["vs_baseline"] == pytest.approx(80.0)


def test_the_tier_serving_at_the_shift_is_the_one_after_the_last_transition_before_it() -> None:
    # gradient promoted, then rolled back to the tree before the shift: the tree is followed, from its return
    back_to_tree = _drift_run([0.9] * 10, [(10.0, "promoted", "tree"), (20.0, "promoted", "gradient"),
                                           (30.0, "rollback", "tree"), (50.0, "promoted", "gradient")])  # fmt: skip
    (hero,) = after_the_shift(back_to_tree, "ladder") or []
    assert (hero["tier"], hero["serving_since"], hero["left"]) == ("tree", 30.0, {"hour": 50.0, "by": "promoted"})
    # back on the rules before the shift: nothing to follow
    rolled_back = _drift_run([1.0] * 10, [(20.0, "promoted"), (30.0, "rollback")])
    assert after_the_shift(rolled_back, "ladder") == []
    verdicts = [c for c in checks([rolled_back], {}, []) if "after the drift" in c["target"]]
    assert [(c["met"], c["detail"]) for c in verdicts] == [(None, "no learned tier served at the shift")]


def test_a_run_without_a_shift_or_without_the_rules_arm_cannot_say() -> None:
    no_shift = _drift_run([0.5] * 10, [(20.0, "promoted")])
    no_shift["drift"] = [d for d in no_shift["drift"] if d["kind"] != "shift"]
    assert after_the_shift(no_shift, "ladder") is None
    assert not any("after the drift" in c["target"] for c in checks([no_shift], {}, []))
    ladder_only = _drift_run([0.5] * 10, [(20.0, "promoted")])
    del ladder_only["arms"]["rules"]
    assert after_the_shift(ladder_only, "ladder") is None
    (verdict,) = [c for c in checks([ladder_only], {}, []) if "after the drift" in c["target"]]
    assert verdict["met"] is None and "needs the rules arm" in verdict["detail"]
