"""``storefront learn``: the learner process alone (joins windows as they close; runs the ladders under a lease)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bandit.config import load_config
from service.cli.common import log_level_arg, redis_args, storage_from


def register(top: Any, bench: Any) -> None:
    p = top.add_parser(
        "learn",
        help="run the learner",
        description="Join decisions with their rewards as reward windows close. Safe to run several.",
    )
    p.add_argument("config", metavar="CONFIG")
    redis_args(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument(
        "--join-grace", type=float, default=2.0,
        help="seconds past a window's close before joining, for clock skew (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)")
    log_level_arg(p)
    p.set_defaults(func=cmd_learn)


def cmd_learn(args: argparse.Namespace) -> int:
    from service.learner.joiner import Joiner
    from service.learner.ladder_runner import LadderRunners
    from service.learner.loop import run_forever, wants_ladders

    config = load_config(args.config)
    storage = storage_from(args, config)
    if args.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    joiner = Joiner(storage, config, grace=args.join_grace)
    # Escalation runs beside the join when a slot asks for it: each slot's ladder under its own lease, the slots
    # shared out between the learners that run.
    ladders = LadderRunners(storage, config) if wants_ladders(config) else None
    if args.once:
        stats = joiner.run_once()
        print(f"joined {stats.joined} rewarded and {stats.defaulted} defaulted decisions; {stats.expired} expired")
        if ladders is not None:
            print(f"ladders: {len(ladders.run_once())} transitions")
            ladders.release()
        return 0
    run_forever(joiner, args.interval, ladders=ladders)
    return 0
