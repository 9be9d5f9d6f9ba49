"""`storefront bench guardrail`: the weighted control keeps the guardrail's power with a thinner holdout."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.bench.guardrail import first_rollback, world
from simulator.cli import main


def test_the_simulated_tiers_have_the_values_asked_for() -> None:
    rng = np.random.default_rng(0)
    for delta in (-0.17, 0.0, 0.09):
        value, p_old, p_new = world(delta, 7, rng)
        old, new = (p_old * value).sum(axis=1).mean(), (p_new * value).sum(axis=1).mean()
        assert new == pytest.approx((1 + delta) * old, rel=1e-6)
        assert (np.argmax(p_old, axis=1) == np.argmax(p_new, axis=1)).sum() == 7


@pytest.mark.slow
def test_weighted_a_5_percent_holdout_catches_a_worse_tier_sooner_than_alone_and_spares_a_better_one() -> None:
    runs = range(6)
    weighted = [first_rollback(-0.25, 7, 0.05, True, 150_000, 100 + k) for k in runs]
    alone = [first_rollback(-0.25, 7, 0.05, False, 150_000, 100 + k) for k in runs]
    assert all(x is not None for x in weighted), weighted
    caught_alone = [x for x in alone if x is not None]
    # on the same decisions the weighted control catches it sooner (median; a miss counts as the whole run)
    assert np.median(weighted) < np.median([x if x is not None else 150_000 for x in alone]), (weighted, alone)
    assert len(caught_alone) <= len(weighted)
    assert all(first_rollback(0.09, 7, 0.05, True, 150_000, 200 + k) is None for k in runs)


def test_the_command_prints_a_row_per_control_and_holdout(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "guardrail", "--runs", "1", "--agree", "7", "--holdouts", "0.1", "0.05",
            "--worse-decisions", "20000", "--better-decisions", "20000"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "window 8,000" in out
    rows = [line for line in out.splitlines() if line.strip().startswith("7/10")]
    assert [r.split()[1:3] for r in rows] == [["holdout", "alone"], ["weighted", "10%"], ["weighted", "5%"]]
