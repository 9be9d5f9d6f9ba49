"""``storefront bench simulate``: decisions per second of the in-process simulator: rules, gradient tier, VW peer."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bandit.config import load_config
from simulator.runner import PEERS, Arm, simulate
from simulator.scenario import load_scenario


def register(bench: Any) -> None:
    """Add ``storefront bench simulate``."""
    parser = bench.add_parser(
        "simulate",
        help="decisions per second of the in-process simulator (rules tier, gradient tier, then the VW peer)",
    )
    parser.add_argument("--config", default="examples/storefront.yaml", help="store config (default the VR store)")
    parser.add_argument("--scenario", default="vr-store")
    parser.add_argument("--events", type=int, default=50_000, help="page views for the rules tier (default 50,000)")
    parser.add_argument("--gradient-events", type=int, default=20_000,
                        help="page views for the gradient tier (default 20,000)")  # fmt: skip
    parser.add_argument("--vw-events", type=int, default=5_000, help="page views for the VW peer (default 5,000)")
    parser.add_argument("--peer", choices=PEERS, default="squarecb")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_bench_simulate)


def _timed(config: Any, scenario: Any, events: int, seed: int, arm: Arm) -> tuple[float, int]:
    started = time.perf_counter()
    result = simulate(config, scenario, events, seed, arms=[arm])
    elapsed = time.perf_counter() - started
    return elapsed, int(result.stats[arm.name].decisions.sum())


def run_bench_simulate(args: argparse.Namespace) -> int:
    from simulator.baselines import VWPeer

    config = load_config(args.config)
    scenario = load_scenario(args.scenario, config)
    rules_time, rules_decisions = _timed(config, scenario, args.events, args.seed, Arm("config", "config", config))
    rules_rate = rules_decisions / rules_time
    print(
        f"rules tier: {rules_decisions:,} decisions ({args.events:,} pages × {len(config.slots)} slots) "
        f"in {rules_time:.2f}s = {rules_rate:,.0f} decisions/s (whole loop: shoppers, truth, rewards; one core)"
    )
    print(f"  target ≥ 20,000 decisions/s: {'ok' if rules_rate >= 20_000 else 'MISSED'}")
    if args.gradient_events > 0:
        from bandit.escalation.learner import make_learner
        from simulator.bench.quality import gradient_day_one

        gradient = gradient_day_one(config)
        learning = [s.name for s in gradient.slots if s.tier == "gradient"]
        arm = Arm("gradient", "config", gradient, learner=make_learner(gradient, args.seed))
        g_time, g_decisions = _timed(config, scenario, args.gradient_events, args.seed, arm)
        g_rate = g_decisions / g_time
        print(
            f"gradient tier ({', '.join(learning) or 'no escalating slot'}; serving and learning online): "
            f"{g_decisions:,} decisions in {g_time:.2f}s = {g_rate:,.0f} decisions/s "
            f"({rules_rate / g_rate:.1f}× the cost of the rules tier)"
        )
    if args.vw_events > 0:
        peer = VWPeer(config, args.peer, args.seed)
        vw_time, vw_decisions = _timed(
            config, scenario, args.vw_events, args.seed, Arm(f"vw-{args.peer}", "peer", config, learner=peer)
        )
        peer.close()
        vw_rate = vw_decisions / vw_time
        print(
            f"VW peer ({args.peer}): {vw_decisions:,} decisions (the first {args.vw_events:,} of the same pages) "
            f"in {vw_time:.2f}s = {vw_rate:,.0f} decisions/s "
            f"(predict + online learn; {rules_rate / vw_rate:.1f}× the cost of the rules tier)"
        )
    return 0
