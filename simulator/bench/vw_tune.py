"""``storefront bench vw-tune``: a small tuning grid for each VW peer, on a seed no comparison uses.

The peer is only a fair yardstick if it is the strongest honest version of
itself, so each algorithm gets a few settings tried on the same simulated
shoppers (one in-process run: the oracle plus one arm per grid point, all on
the same pages and common random numbers):

- SquareCB: ``gamma_scale`` × ``learning_rate``;
- RegCB: elimination (``--regcb``) vs optimistic (``--regcb --regcbopt``), each with two ``mellowness`` values;
- epsilon-greedy: ``epsilon``.

A point's **score** is its mean expected reward per page over the last 20 %
of the run (time buckets 80–99) as a percentage of the oracle's on the same
pages — the ``pct_of_oracle`` of :mod:`simulator.report`, restricted to the end
of the run, where the learner has learned.  The best score per algorithm is
chosen (ties: the earlier grid point).  The tuning seed (default 1001) must be
one no comparison uses, and the runs are short (40,000 pages by default): the
grid is a tuning signal, not the comparison.

``--out FILE`` writes the grid and the chosen settings as JSON in the format of
``simulator/peers.json``, the table :class:`simulator.baselines.VWPeer` takes
its settings from by default; ``--out simulator/peers.json`` updates it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config import StoreConfig, load_config
from bandit.learners.vw import describe_settings
from simulator.baselines import VWPeer
from simulator.progress import Progress
from simulator.runner import BUCKETS, Arm, SimulationResult, simulate, standard_arms
from simulator.scenario import Scenario, load_scenario

FORMAT = "storefront.vw-peers.v1"
TUNING_SEED = 1001
LAST_SHARE = 0.2  # the score looks at the last 20 % of the run
# 13 points × 40,000 pages: about 9 minutes on one (shared) core.  RegCB's elimination variant gets smaller
# mellowness values than the optimistic one: at 0.01 and 0.001 it eliminated nothing in 40,000 pages (uniform play).
# Cubic interactions (``--interactions cci``) are left out: about eight times the features of ``ci`` per action.
GRID: dict[str, list[dict[str, Any]]] = {
    "squarecb": [
        {"gamma_scale": gamma, "learning_rate": rate} for gamma in (100.0, 200.0, 400.0) for rate in (0.5, 1.0)
    ],
    "regcb": [
        {"regcbopt": False, "mellowness": 0.001},
        {"regcbopt": False, "mellowness": 0.0001},
        {"regcbopt": True, "mellowness": 0.01},
        {"regcbopt": True, "mellowness": 0.001},
    ],
    "epsilon": [{"epsilon": eps} for eps in (0.05, 0.1, 0.2)],
}


def register(bench: Any) -> None:
    """Add ``storefront bench vw-tune``."""
    parser = bench.add_parser(
        "vw-tune",
        help="tune the VW peers on a small grid (tuning seed; writes the chosen settings as JSON)",
        description="Run each VW peer algorithm's grid of settings beside the oracle on the same simulated shoppers "
        "and choose, per algorithm, the setting with the best share of the oracle's expected reward over the last "
        "20% of the run.",
    )
    parser.add_argument("--config", default="examples/storefront.yaml", help="store config (default the VR store)")
    parser.add_argument("--scenario", default="vr-store", help="shipped scenario or a YAML path (default vr-store)")
    parser.add_argument("--events", type=int, default=40_000, help="page views per grid point (default 40,000)")
    parser.add_argument(
        "--seed", type=int, default=TUNING_SEED, help=f"tuning seed, one no comparison uses (default {TUNING_SEED})"
    )
    parser.add_argument(
        "--algorithms",
        nargs="+",
        choices=list(GRID),
        default=list(GRID),
        help="algorithms to tune (default all: squarecb regcb epsilon)",
    )
    parser.add_argument("--points", type=int, default=0, help="only the first N grid points per algorithm")
    parser.add_argument("--out", default=None, help="write the grid and the chosen settings to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_vw_tune)


def grid_points(algorithms: Sequence[str], points: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``(algorithm, settings)`` of every grid point to run, algorithm by algorithm."""
    out: list[tuple[str, dict[str, Any]]] = []
    for algorithm in algorithms:
        grid = GRID[algorithm][:points] if points > 0 else GRID[algorithm]
        out.extend((algorithm, dict(settings)) for settings in grid)
    return out


def late_share(result: SimulationResult, arm: str, slot: int | None = None) -> float | None:
    """Percent of the oracle's expected reward that ``arm`` earned over the last 20 % of the run (page or slot)."""
    first = round(BUCKETS * (1.0 - LAST_SHARE))
    mine, oracle = result.stats[arm].expected[first:], result.stats["oracle"].expected[first:]
    if slot is not None:
        mine, oracle = mine[:, slot], oracle[:, slot]
    total = float(np.sum(oracle))
    return 100.0 * float(np.sum(mine)) / total if total else None


def whole_share(result: SimulationResult, arm: str) -> float | None:
    total = float(result.stats["oracle"].expected.sum())
    return 100.0 * float(result.stats[arm].expected.sum()) / total if total else None


def tune(
    config: StoreConfig,
    scenario: Scenario,
    events: int,
    seed: int,
    points: Sequence[tuple[str, Mapping[str, Any]]],
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Run every grid point beside the oracle on the same pages; one row per point, in grid order."""
    arms = standard_arms(config, seed, peers=(), include_config=False)[:1]  # the oracle
    peers = []
    for k, (algorithm, settings) in enumerate(points):
        peer = VWPeer(config, algorithm, seed, settings=settings)
        peers.append(peer)
        arms.append(Arm(f"{k}:vw-{algorithm}", "peer", config, learner=peer, description=peer.describe()))
    result = simulate(config, scenario, events, seed, arms=arms, progress=progress)
    rows = []
    for arm, peer, (algorithm, settings) in zip(arms[1:], peers, points, strict=True):
        score, first_slot = late_share(result, arm.name), late_share(result, arm.name, 0)
        rows.append(
            {
                "algorithm": algorithm,
                "settings": dict(settings),
                "arguments": peer.arguments,
                "score": _r(score),
                "first_slot_score": _r(first_slot),
                "whole_run_score": _r(whole_share(result, arm.name)),
                "clipped_rewards": sum(learner.clipped_ for learner in peer.learners.values()),
            }
        )
    return rows


def choose(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The best-scoring row per algorithm (ties: the earlier one)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        best = chosen.get(row["algorithm"])
        if best is None or (row["score"] is not None and (best["score"] is None or row["score"] > best["score"])):
            chosen[row["algorithm"]] = {
                "settings": dict(row["settings"]),
                "arguments": row["arguments"],
                "score": row["score"],
            }
    return chosen


def command_line(args: argparse.Namespace) -> str:
    parts = [
        "storefront bench vw-tune",
        f"--config {args.config}",
        f"--scenario {args.scenario}",
        f"--events {args.events}",
        f"--seed {args.seed}",
        f"--algorithms {' '.join(args.algorithms)}",
    ]
    if args.points > 0:
        parts.append(f"--points {args.points}")
    return " ".join(parts)


def grid_table(rows: Sequence[Mapping[str, Any]], slot: str) -> str:
    head = f"{'algorithm':<10} {'settings':<42} {'score':>7} {slot[:9]:>9} {'whole run':>9}"
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = [_fmt(row[k]) for k in ("score", "first_slot_score", "whole_run_score")]
        settings = describe_settings(row["settings"])
        lines.append(f"{row['algorithm']:<10} {settings:<42} {cells[0]:>7} {cells[1]:>9} {cells[2]:>9}")
    return "\n".join(lines)


def run_vw_tune(args: argparse.Namespace) -> int:
    if args.events < 1:
        print("--events must be ≥ 1", file=sys.stderr)
        return 2
    config = load_config(args.config)
    scenario = load_scenario(args.scenario, config)
    points = grid_points(args.algorithms, args.points)
    started = time.perf_counter()
    progress = Progress(args.events * (len(points) + 1), "tuning", not args.no_progress)
    rows = tune(config, scenario, args.events, args.seed, points, progress=progress)
    progress.close()
    chosen = choose(rows)
    elapsed = time.perf_counter() - started
    print(
        f"VW peer tuning: {scenario.name} × {Path(args.config).name}, {args.events:,} pages per grid point, "
        f"seed {args.seed}; score = % of the oracle's expected reward per page over the last "
        f"{LAST_SHARE:.0%} of the run (the {config.slot_names[0]} column: that slot alone)\n"
    )
    print(grid_table(rows, config.slot_names[0]))
    print("\nchosen:")
    for algorithm in args.algorithms:
        pick = chosen[algorithm]
        settings = describe_settings(pick["settings"])
        print(f"  {algorithm:<9} {settings:<42} {_fmt(pick['score']):>7}  {pick['arguments']}")
    print(
        f"\n{len(points)} grid points × {args.events:,} pages in {elapsed:.0f}s; a tuning signal on short runs, "
        "not the comparison (run `storefront simulate` on another seed for that)"
    )
    if args.out:
        record = {
            "format": FORMAT,
            "comment": f"VW peer settings chosen by `{command_line(args)}` (tuning seed {args.seed}, never used for "
            "comparisons); simulator.baselines.VWPeer uses 'peers' by default",
            "command": command_line(args),
            "config": Path(args.config).name,
            "scenario": scenario.name,
            "events": args.events,
            "seed": args.seed,
            "score": f"percent of the oracle's expected reward per page over the last {LAST_SHARE:.0%} of the run",
            "peers": {algorithm: chosen[algorithm] for algorithm in args.algorithms},
            "grid": rows,
        }
        Path(args.out).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"written: {args.out}")
    return 0


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.1f}"
