"""``storefront simulate`` and ``storefront bench simulate``.

The console script belongs to ``service.cli``; it registers these parsers with
:func:`add_simulate_parser` and :func:`add_bench_simulate_parser`.  Each
parser sets ``func``, a function of the parsed arguments returning the exit
code.  ``python -m simulator`` runs the same commands without the service.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from bandit.config import ConfigError, StoreConfig, load_config
from simulator.runner import PEERS, Arm, simulate
from simulator.scenario import Scenario, load_scenario, shipped_scenarios


class Progress:
    """A one-line progress bar on stderr; silent when stderr is not a terminal or when disabled."""

    def __init__(self, total: int, label: str = "simulating", enabled: bool = True, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self.started = time.perf_counter()
        self._last = -1

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        percent = min(100, self.done * 100 // self.total)
        if percent == self._last:
            return
        self._last = percent
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        bar = "#" * (percent * 30 // 100)
        self.stream.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {rate:,.0f} pages/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


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


def load_inputs(args: argparse.Namespace) -> tuple[StoreConfig, Scenario] | None:
    """The config and the scenario named on the command line, or None after printing why not."""
    try:
        config = load_config(args.config)
        return config, load_scenario(args.scenario, config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def run_simulate(args: argparse.Namespace) -> int:
    from simulator.report import write_report

    loaded = load_inputs(args)
    if loaded is None:
        return 2
    config, scenario = loaded
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
                config, scenario, args.target, events, args.seed, peers, args.time_scale, progress=progress
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


# --------------------------------------------------------------------------- bench


def add_bench_simulate_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    parser = bench_subparsers.add_parser(
        "simulate",
        help="decisions per second of the in-process simulator (rules tier, then the VW peer)",
    )
    parser.add_argument("--config", default="examples/storefront.yaml", help="store config (default the VR store)")
    parser.add_argument("--scenario", default="vr-store")
    parser.add_argument("--events", type=int, default=50_000, help="page views for the rules tier (default 50,000)")
    parser.add_argument("--vw-events", type=int, default=5_000, help="page views for the VW peer (default 5,000)")
    parser.add_argument("--peer", choices=PEERS, default="squarecb")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_bench_simulate)
    return parser


def _timed(config: Any, scenario: Any, events: int, seed: int, arm: Arm) -> tuple[float, int]:
    started = time.perf_counter()
    result = simulate(config, scenario, events, seed, arms=[arm])
    elapsed = time.perf_counter() - started
    return elapsed, int(result.stats[arm.name].decisions.sum())


def run_bench_simulate(args: argparse.Namespace) -> int:
    from simulator.baselines import VWPeer

    loaded = load_inputs(args)
    if loaded is None:
        return 2
    config, scenario = loaded
    rules_time, rules_decisions = _timed(config, scenario, args.events, args.seed, Arm("config", "config", config))
    rules_rate = rules_decisions / rules_time
    print(
        f"rules tier: {rules_decisions:,} decisions ({args.events:,} pages × {len(config.slots)} slots) "
        f"in {rules_time:.2f}s = {rules_rate:,.0f} decisions/s (whole loop: shoppers, truth, rewards; one core)"
    )
    print(f"  target ≥ 20,000 decisions/s: {'ok' if rules_rate >= 20_000 else 'MISSED'}")
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


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator simulate ...`` / ``python -m simulator bench simulate ...``."""
    parser = argparse.ArgumentParser(prog="python -m simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(commands)
    bench = commands.add_parser("bench", help="benchmarks")
    add_bench_simulate_parser(bench.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
