"""``storefront bench guardrail``: how often the guardrail rolls back a better tier, and how fast a worse one.

The guardrail's own functions (:func:`~bandit.escalation.guardrail.guardrail_breached` on each arm's rewards,
:func:`~bandit.escalation.guardrail.control_breached` on every decision importance-weighted) are fed decisions
of a slot after a promotion: ten equally common shopper segments, 31 items, two tiers that each show their
favourite item of a segment with probability 0.9 plus 10% uniform exploration, and agree on the favourite in
``agree`` of the ten segments.  Rewards are the VR hero's kind: mostly zeros, purchases worth 13–16, the
favourites worth 0.33 per decision on the old tier, other items 0.15; the new tier's own favourites are worth
what makes its value ``(1 + delta)`` × the old tier's.  The settings are the example config's
(``guardrail_window`` 8,000, margin 0, 99%, ``guardrail_min_events`` 300).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bandit.config import EscalationSettings
from bandit.escalation.guardrail import ArmStats, ControlPool, control_breached, guardrail_breached

SETTINGS = EscalationSettings(
    guardrail_window=8000, guardrail_margin=0.0, guardrail_confidence=0.99, guardrail_min_events=300
)
ITEMS, SEGMENTS, EXPLORATION = 31, 10, 0.10
FAVOURITE, OTHER, PURCHASE = 0.33, 0.15, 14.5  # expected reward per decision; a purchase's mean value
BATCH = 50  # decisions between the guardrail's calls, as a learner's batches


def _policy(favourites: np.ndarray) -> np.ndarray:
    probs = np.full((SEGMENTS, ITEMS), EXPLORATION / ITEMS)
    probs[np.arange(SEGMENTS), favourites] += 1.0 - EXPLORATION
    return probs


def world(delta: float, agree: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected reward per segment and item, the old tier's and the new tier's probabilities."""
    value = np.full((SEGMENTS, ITEMS), OTHER)
    old = rng.integers(0, ITEMS, SEGMENTS)
    new = old.copy()
    differ = np.arange(agree, SEGMENTS)
    new[differ] = (old[differ] + 1 + rng.integers(0, ITEMS - 1, differ.size)) % ITEMS
    value[np.arange(SEGMENTS), old] = FAVOURITE
    p_old, p_new = _policy(old), _policy(new)
    low, high = 0.0, PURCHASE / 2
    for _ in range(60):  # the new favourites' value that gives the new tier its target (the old tier explores them)
        middle = (low + high) / 2
        value[differ, new[differ]] = middle
        gap = (p_new * value).sum(axis=1).mean() - (1.0 + delta) * (p_old * value).sum(axis=1).mean()
        low, high = (middle, high) if gap < 0 else (low, middle)
    value[differ, new[differ]] = low
    return value, p_old, p_new


def first_rollback(delta: float, agree: int, holdout: float, weighted: bool, decisions: int, seed: int) -> int | None:
    """Decisions until the guardrail's first rollback (None: none within ``decisions``)."""
    rng = np.random.default_rng(seed)
    value, p_old, p_new = world(delta, agree, rng)
    segment = rng.integers(0, SEGMENTS, decisions)
    on_old = rng.random(decisions) < holdout
    draw = rng.random(decisions)[:, None]
    item = np.where(on_old, (draw > np.cumsum(p_old, 1)[segment]).sum(1), (draw > np.cumsum(p_new, 1)[segment]).sum(1))
    item = np.minimum(item, ITEMS - 1)
    bought = rng.random(decisions) < value[segment, item] / PURCHASE
    reward = np.where(bought, rng.uniform(13.0, 16.0, decisions) * PURCHASE / 14.5, 0.0)
    new_p, old_p = p_new[segment, item], p_old[segment, item]
    mixture = (1.0 - holdout) * new_p + holdout * old_p
    pool = ControlPool("new", "old", int(np.ceil(SETTINGS.guardrail_window / holdout)))
    new_arm, old_arm = ArmStats(), ArmStats()
    for start in range(0, decisions, BATCH):
        stop = min(decisions, start + BATCH)
        if weighted:
            for k in range(start, stop):
                pool.add(float(reward[k]), float(mixture[k]), {"new": float(new_p[k]), "old": float(old_p[k])})
            breached = control_breached(pool, SETTINGS)
        else:
            for r, old in zip(reward[start:stop].tolist(), on_old[start:stop].tolist(), strict=True):
                (old_arm if old else new_arm).add(r, SETTINGS.guardrail_window)
            breached = guardrail_breached(new_arm, old_arm, SETTINGS)
        if breached:
            return stop
    return None


def register(bench: Any) -> None:
    """Add ``storefront bench guardrail``."""
    p = bench.add_parser(
        "guardrail",
        help="the guardrail's false rollbacks and its detection of a worse tier, holdout alone vs weighted",
        description="Feed the guardrail simulated decisions after a promotion and count its rollbacks of a better "
        "tier and how fast it rolls back a worse one: the holdout's own rewards against every decision "
        "importance-weighted, for several holdout shares.",
    )
    p.add_argument("--runs", type=int, default=20, help="runs per cell (default: %(default)s)")
    p.add_argument("--agree", type=int, nargs="+", default=[7, 3],
                   help="segments of 10 where the tiers agree (default: 7 3)")  # fmt: skip
    p.add_argument("--holdouts", type=float, nargs="+", default=[0.10, 0.05, 0.03, 0.02])
    p.add_argument("--worse", type=float, default=-0.17, help="the worse tier's relative value (default -0.17)")
    p.add_argument("--better", type=float, default=0.09, help="the better tier's (default 0.09)")
    p.add_argument("--worse-decisions", type=int, default=300_000)
    p.add_argument("--better-decisions", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="5 runs, 100,000 and 200,000 decisions (about a minute)")
    p.set_defaults(func=run_bench_guardrail)


def cells(args: argparse.Namespace) -> list[tuple[int, str, float]]:
    """(agree, method, holdout) rows: the holdout alone at the largest share, weighted at every share."""
    rows = []
    for agree in args.agree:
        rows.append((agree, "holdout alone", max(args.holdouts)))
        rows += [(agree, "weighted", h) for h in sorted(args.holdouts, reverse=True)]
    return rows


def run_bench_guardrail(args: argparse.Namespace) -> int:
    if args.quick:
        args.runs, args.worse_decisions, args.better_decisions = 5, 100_000, 200_000
    started = time.perf_counter()
    print(f"guardrail: window {SETTINGS.guardrail_window:,}, margin {SETTINGS.guardrail_margin}, "
          f"{SETTINGS.guardrail_confidence:.0%}, min events {SETTINGS.guardrail_min_events}; {args.runs} runs a cell; "
          f"a worse tier ({args.worse:+.0%}) within {args.worse_decisions:,} decisions, a better one "
          f"({args.better:+.0%}) within {args.better_decisions:,}")  # fmt: skip
    print(f"{'agree':>5}  {'control':<14} {'holdout':>7}  {'worse: rolled back':>18}  {'median':>8}  "
          f"{'slowest':>8}  {'better: rolled back':>19}")  # fmt: skip
    for agree, method, holdout in cells(args):
        weighted = method == "weighted"
        worse = [first_rollback(args.worse, agree, holdout, weighted, args.worse_decisions, 1000 + k)
                 for k in range(args.runs)]  # fmt: skip
        better = [first_rollback(args.better, agree, holdout, weighted, args.better_decisions, 2000 + k)
                  for k in range(args.runs)]  # fmt: skip
        print(_row(agree, method, holdout, worse, better), flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _row(agree: int, method: str, holdout: float, worse: Sequence[int | None], better: Sequence[int | None]) -> str:
    hit = sorted(x for x in worse if x is not None)
    median = f"{int(np.median(hit)):,}" if hit else "–"
    slowest = f"{hit[-1]:,}" if hit else "–"
    false = sum(x is not None for x in better)
    return (f"{agree:>3}/10  {method:<14} {holdout:>7.0%}  {len(hit):>11}/{len(worse):<6}  {median:>8}  "
            f"{slowest:>8}  {false:>12}/{len(better):<6}")  # fmt: skip
