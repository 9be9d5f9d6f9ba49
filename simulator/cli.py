"""``storefront simulate``, and the simulator's benchmarks, for the ``storefront`` command.

The console script belongs to the service; this package adds its commands
through the ``storefront.commands`` entry-point group (:func:`register`, see
``pyproject.toml``): ``simulate`` and the ``bench`` commands of
:mod:`simulator.bench`.  ``python -m simulator`` runs the same commands without the
service.  Each command returns its exit code; a config or scenario that does
not load raises :class:`~bandit.config.ConfigError`, printed by the caller
with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bandit.config import ConfigError, load_config
from simulator.bench import evaluate, guardrail, ladder, learn, ope, quality, vw_tune
from simulator.bench import simulate as bench_simulate
from simulator.progress import Progress
from simulator.runner import PEERS, simulate
from simulator.scenario import load_scenario, shipped_scenarios

_BENCHMARKS = (bench_simulate, evaluate, guardrail, ladder, learn, ope, quality, vw_tune)


def register(top: Any, bench: Any) -> None:
    """Add the simulator's commands to ``storefront`` (``top``) and ``storefront bench`` (``bench``)."""
    add_simulate_parser(top)
    for benchmark in _BENCHMARKS:
        benchmark.register(bench)


def _peers(values: list[str] | None) -> list[str]:
    if not values:
        return ["squarecb"]
    if "none" in values:
        return []
    return list(dict.fromkeys(values))


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="dry-run a config against simulated shoppers and write a report",
        description="Run a store config, an oracle, uniform random and a VW peer on the same simulated shoppers; "
        "write report.md, report.json and PNG plots.",
    )
    parser.add_argument("config", help="store config YAML")
    parser.add_argument(
        "--scenario", required=True, help=f"shipped scenario ({', '.join(shipped_scenarios())}) or a YAML path"
    )
    parser.add_argument("--events", type=int, default=None, help="page views (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random stream (default 0)")
    parser.add_argument("--out", default="run", help="output directory (default run/)")
    parser.add_argument(
        "--target", default=None, help="drive a live service at this URL instead, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("STOREFRONT_API_KEY"),
        help="with --target: a backend key of the service (default: $STOREFRONT_API_KEY; `storefront keys show "
        "backend` prints the one storefront serve made)",
    )  # fmt: skip
    parser.add_argument(
        "--peer",
        action="append",
        choices=[*PEERS, "none"],
        help="VW cb_explore_adf peer(s) run beside the config; repeat for several (default squarecb)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="write the report without PNGs")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.001,
        help="HTTP mode: wall seconds per simulated second of reward delay (default 0.001)",
    )
    parser.set_defaults(func=run_simulate)
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    from simulator.report import write_report

    config = load_config(args.config)
    scenario = load_scenario(args.scenario, config)
    events = args.events or scenario.events
    if events < 1:
        print("--events must be ≥ 1", file=sys.stderr)
        return 2
    peers = _peers(args.peer)
    started = time.perf_counter()
    if args.target:
        from simulator.http_driver import HTTPError, simulate_http

        progress = Progress(events * (len(peers) + 4), "driving", not args.no_progress)
        try:
            result = simulate_http(
                config,
                scenario,
                args.target,
                events,
                args.seed,
                peers,
                args.time_scale,
                progress=progress,
                api_key=args.api_key,
            )
        except HTTPError as exc:
            progress.close()
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        progress = Progress(events * (len(peers) + 3), "simulating", not args.no_progress)
        result = simulate(config, scenario, events, args.seed, peers, progress=progress)
    progress.close()
    report = write_report(result, args.out, plots=not args.no_plots)
    print(summary_table(report))
    print(f"\n{events:,} page views in {time.perf_counter() - started:.1f}s; report in {args.out}/report.md")
    return 0


def summary_table(report: dict[str, Any]) -> str:
    lines = [f"{'policy':<16} {'mean reward':>12} {'mean expected':>14} {'% of oracle':>12} {'regret':>12}"]
    for name in report["order"]:
        p = report["policies"][name]
        pct = f"{p['pct_of_oracle']:.1f}" if p["pct_of_oracle"] is not None else "-"
        regret = f"{p['regret']:.1f}" if p["regret"] is not None else "-"
        lines.append(f"{name:<16} {p['mean_reward']:>12.4f} {p['mean_expected_reward']:>14.4f} {pct:>12} {regret:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator simulate ...`` / ``python -m simulator bench {simulate,ladder,ope} ...``."""
    parser = argparse.ArgumentParser(prog="python -m simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(commands)
    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    for benchmark in _BENCHMARKS:
        benchmark.register(bench)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc.refusal(), file=sys.stderr)
        return 2
