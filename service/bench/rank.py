"""``storefront bench rank``: how fast ``/v1/rank`` is, next to a do-nothing twin on the same settings.

The targets: ``/v1/rank`` serves at least 0.75×
the throughput of a do-nothing Flask endpoint on the same gunicorn settings,
and its p99 latency stays at or under 5 ms at 1,000 requests per second on
two cores.  Machines are noisy, so the throughput target is a ratio against an
anchor measured in the same run, not an absolute number.

What runs
---------
* **rank**: exactly what ``storefront serve`` runs (gunicorn with
  ``service/http/gunicorn_conf.py``, the embedded Redis unless ``REDIS_URL`` is
  set, Prometheus multiprocess metrics, the learner), on a free loopback port.
* **twin**: :mod:`service.bench.twin` under the same gunicorn config, workers,
  worker class and threads.

Both get the same varied request bodies, drawn from the config's context
schema.  After a warm-up, closed-loop runs alternate between the two (twin,
rank, rank, twin, ...) so that a machine getting slower or faster during the
run does not favour either; each target reports the median of its runs.  The
load generator is ``wrk`` when it is on ``PATH`` (each run is sized from the
warm-up rate to about ``--requests`` requests, capped by ``--duration``), else
a Python one (several processes, keep-alive ``http.client`` connections).

With ``--tiers`` the same runs are made with every slot served from each
tier in turn: ``tree`` and ``gradient`` from synthetic snapshots of a learned
one's size, saved where the ladder saves a promotion (see
:mod:`service.bench.stores`); ``--items`` grows the catalog (every item is a
candidate of every slot).

Then an open-loop run sends ``/v1/rank`` requests at a fixed ``--rate`` for
``--rate-duration`` seconds, each on its own schedule, and measures latency
from the time a request was *due*, not from when it was sent, so a stalled
server cannot hide its queue (no coordinated omission).

Every process is started in its own session and stopped, with its children,
on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bandit.config import DAYS, ContextField, StoreConfig, load_config
from service.bench.stores import TIERS, seed_tier, widen_catalog
from service.http.workers import SERVE_THREADS, SERVE_WORKERS

RATIO_TARGET = 0.75
P99_TARGET_MS = 5.0
_PATH = "/v1/rank"
# The backend key the benchmark's service is started with and its load sends (loopback only, for the run's length):
# the rank path is measured with its key check, as stores call it.
_KEY = "sk_bench_loopback_0123456789abcdef"
_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {_KEY}"}
_DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "storefront.yaml"


# --------------------------------------------------------------------------- the command line


def register(top: Any, bench: Any) -> None:
    """Add ``storefront bench rank``."""
    p = bench.add_parser(
        "rank",
        help="throughput and latency of /v1/rank against a do-nothing twin",
        description="Start the service (as `storefront serve` runs it) and a do-nothing Flask twin on the same "
        "gunicorn settings, load both on loopback, and print both throughputs, their ratio (target "
        f"≥ {RATIO_TARGET}) and the p99 latency at a fixed rate (target ≤ {P99_TARGET_MS:g} ms).",
    )
    p.add_argument("--config", default=str(_DEFAULT_CONFIG), help="store config YAML (default: the example store)")
    p.add_argument("--requests", type=int, default=20_000, help="requests per measured run (default: %(default)s)")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections (default: %(default)s)")
    p.add_argument("--duration", type=float, default=20.0, help="cap on one run, in seconds (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="measured runs per target (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default: %(default)s)")
    p.add_argument("--rate", type=float, default=1000.0, help="fixed rate for the latency run (default: %(default)s)")
    p.add_argument("--rate-duration", type=float, default=5.0, help="seconds of the fixed-rate run (default: 5)")
    p.add_argument("--workers", type=int, default=SERVE_WORKERS, help="gunicorn workers (default: as serve)")
    p.add_argument("--threads", type=int, default=SERVE_THREADS, help="threads per worker (default: as serve)")
    p.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto",
                   help="load generator for the throughput runs (default: wrk if on PATH)")  # fmt: skip
    p.add_argument(
        "--tiers",
        default="rules",
        help="the tiers every slot is served from, measured in turn: a comma list of rules, tree, "
        "gradient (learned tiers from synthetic snapshots of realistic size; default: rules)",
    )
    p.add_argument(
        "--items",
        type=int,
        default=0,
        help="grow the catalog to this many items (copies of the config's), e.g. 50 for a "
        "50-candidate store (default: the config's catalog)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the request bodies (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed or a request failed")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_bench_rank)


def cmd_bench_rank(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for name in ("requests", "connections", "rounds", "workers", "threads"):
        if getattr(args, name) < 1:
            print(f"--{name} must be ≥ 1", file=sys.stderr)
            return 2
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if not tiers or unknown or len(set(tiers)) != len(tiers):
        print(f"--tiers: a comma list of distinct tiers among {', '.join(TIERS)} (got {args.tiers!r})",
              file=sys.stderr)  # fmt: skip
        return 2
    args.tiers = tiers
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"
    elif loader == "wrk" and not shutil.which("wrk"):
        print("--loader wrk: wrk is not on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    progress = _Progress(quiet=False)
    with _terminate_on_sigterm():
        report = run_bench(config, str(Path(args.config).resolve()), args, loader, progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if args.check and not report["ok"]:
        return 1
    return 0


# --------------------------------------------------------------------------- request bodies


def make_bodies(config: StoreConfig, count: int, seed: int) -> list[bytes]:
    """``count`` varied, valid ``/v1/rank`` bodies drawn from the config's context schema.

    Optional context fields are left out a quarter of the time (so defaults
    are exercised); a fifth of the pages exclude one to three catalog items and
    a tenth ask for a subset of the slots, as a store's backend would.
    """
    rng = random.Random(seed)
    items = list(config.catalog.ids)
    slots = list(config.slot_names)
    bodies = []
    for _ in range(count):
        context = {}
        for spec in config.context.fields:
            if not spec.required and rng.random() < 0.25:
                continue
            context[spec.name] = _context_value(spec, rng)
        body: dict[str, Any] = {"context": context}
        draw = rng.random()
        if draw < 0.2 and len(items) > 3:
            body["exclude"] = rng.sample(items, rng.randint(1, 3))
        elif draw < 0.3:
            body["slots"] = rng.sample(slots, rng.randint(1, len(slots)))
        _, problems = config.context.normalise(context)
        if problems:  # pragma: no cover - a schema kind this generator does not know
            raise ValueError(f"generated an invalid context {context}: {problems}")
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def _context_value(spec: ContextField, rng: random.Random) -> Any:
    if spec.kind == "category":
        return rng.choice(spec.values)
    if spec.kind == "bool":
        return rng.random() < 0.5
    if spec.kind == "hour":
        return rng.randrange(24)
    if spec.kind == "day_of_week":
        return rng.choice(DAYS)
    lo = spec.min if spec.min is not None else 0
    hi = spec.max if spec.max is not None else lo + 100
    if spec.kind == "integer":
        return rng.randint(math.ceil(lo), math.floor(hi))
    return round(rng.uniform(lo, hi), 2)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Processes:
    """Child processes, each in its own session, stopped with all their children on exit."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._procs.append((name, proc))
        return proc

    def stop_all(self, timeout: float = 20.0) -> None:
        # SIGTERM first: `storefront serve` stops gunicorn, the learner and its Redis itself.
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self._procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            # Whatever is left of the session (workers of a master that died first) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._procs.clear()


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so the cleanup in ``finally`` blocks runs."""

    def _raise(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _gunicorn_env(bind: str, workers: int, threads: int, log_level: str) -> dict[str, str]:
    """The settings ``storefront serve`` hands to ``service/http/gunicorn_conf.py`` (in step with ``cmd_serve``)."""
    return {
        "STOREFRONT_BIND": bind,
        "STOREFRONT_WORKERS": str(workers),
        "STOREFRONT_THREADS": str(threads),
        "STOREFRONT_WORKER_CLASS": "gthread" if threads > 1 else "sync",
        "STOREFRONT_LOG_LEVEL": log_level,
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} did not become ready within {timeout:.0f}s:\n{_tail(log_path)}")


def _tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of ``root`` and all its descendants so far (None without a Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    if root not in ticks:
        return None
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / tick


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class BenchError(RuntimeError):
    """The benchmark could not run (a process did not start, a load generator failed)."""


# --------------------------------------------------------------------------- results


@dataclass
class LoadResult:
    """One load run against one target."""

    target: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int = 0
    socket_errors: int = 0
    cpu_ms_per_request: float | None = None  # CPU time of the target's processes (server side only)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


@dataclass
class _Progress:
    quiet: bool
    started: float = field(default_factory=time.monotonic)

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --------------------------------------------------------------------------- the run


def run_bench(
    config: StoreConfig, config_path: str, args: argparse.Namespace, loader: str, progress: _Progress
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="storefront-bench-"))
    processes = _Processes()
    prefix = f"bench:{uuid.uuid4().hex[:10]}:"
    external_redis = os.environ.get("REDIS_URL")
    try:
        config_path = str(widen_catalog(Path(config_path), args.items, work / "store.yaml"))
        config = load_config(config_path)
        bodies = make_bodies(config, 1000, args.seed)
        rank_port, twin_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "STOREFRONT_CONFIG")}
        env.pop("STOREFRONT_API_KEYS_FILE", None)
        env["STOREFRONT_API_KEYS"] = f"backend bench {_KEY}"
        if external_redis:  # keep the benchmark's decisions apart from a real store's
            env["STOREFRONT_REDIS_PREFIX"] = prefix
        rank_log, twin_log = work / "serve.log", work / "twin.log"
        serve = processes.start(
            "storefront serve",
            [sys.executable, "-m", "service.cli", "serve", config_path, "--bind", f"127.0.0.1:{rank_port}",
             "--data-dir", str(work / "data"), "--workers", str(args.workers), "--threads", str(args.threads),
             "--log-level", args.log_level],
            env, rank_log,
        )  # fmt: skip
        twin_env = {**env, **_gunicorn_env(f"127.0.0.1:{twin_port}", args.workers, args.threads, args.log_level)}
        twin = processes.start(
            "twin",
            [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.bench.twin:app"],
            twin_env, twin_log,
        )  # fmt: skip
        progress(f"starting the service (port {rank_port}) and the twin (port {twin_port}), {args.workers} "
                 f"worker(s) × {args.threads} thread(s) each, {len(config.catalog.items)} items")  # fmt: skip
        _wait_ready(f"http://127.0.0.1:{rank_port}/readyz", serve, rank_log, "storefront serve")
        _wait_ready(f"http://127.0.0.1:{twin_port}/healthz", twin, twin_log, "the twin")
        ports = {"twin": twin_port, "rank": rank_port}
        roots = {"twin": twin.pid, "rank": serve.pid}  # gunicorn, the learner, the embedded Redis are below
        storage = _serve_storage(work / "data")

        load = _WrkLoader(work, bodies) if loader == "wrk" else _PythonLoader(bodies)
        progress(f"warming up twin for {args.warmup:g}s")
        twin_rate = max(load.run("twin", twin_port, args.connections, duration=max(args.warmup, 0.5)).rps, 1.0)
        measured: dict[str, tuple[dict[str, list[LoadResult]], dict[str, Any]]] = {}
        for tier in args.tiers:
            seed_tier(storage, config, tier, args.seed)
            _wait_tier(rank_port, bodies[0], tier)
            progress(f"every slot on {tier}: warming up rank for {args.warmup:g}s")
            rank_rate = max(load.run("rank", rank_port, args.connections, duration=max(args.warmup, 0.5)).rps, 1.0)
            rates = {"twin": twin_rate, "rank": rank_rate}
            runs: dict[str, list[LoadResult]] = {"twin": [], "rank": []}
            # twin, rank, rank, twin, twin, rank, ...: a linear drift cancels out over each pair of rounds.
            order = [("twin", "rank") if r % 2 == 0 else ("rank", "twin") for r in range(args.rounds)]
            for round_no, pair in enumerate(order, 1):
                for target in pair:
                    duration = min(max(args.requests / rates[target], 0.5), args.duration)
                    cpu_before = _tree_cpu_seconds(roots[target])
                    result = load.run(target, ports[target], args.connections, duration=duration,
                                      requests=args.requests)  # fmt: skip
                    cpu_after = _tree_cpu_seconds(roots[target])
                    if cpu_before is not None and cpu_after is not None and result.requests:
                        result.cpu_ms_per_request = (cpu_after - cpu_before) * 1e3 / result.requests
                    runs[target].append(result)
                    progress(f"{tier} round {round_no}/{args.rounds} {target}: {result.requests} requests, "
                             f"{result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                             f"p99 {result.p99_ms:.2f} ms")  # fmt: skip
            progress(f"{tier}: open loop, /v1/rank at {args.rate:g} req/s for {args.rate_duration:g}s")
            fixed = open_loop(
                "127.0.0.1", rank_port, bodies, args.rate, args.rate_duration, connections=max(args.connections, 8)
            )
            measured[tier] = (runs, fixed)
        unlogged = _storage_errors(rank_port)
        storage.client.close()
    finally:
        processes.stop_all()
        if external_redis:
            _drop_prefix(external_redis, prefix)
        shutil.rmtree(work, ignore_errors=True)

    return _report(config, args, loader, measured, unlogged)


def _serve_storage(data_dir: Path) -> Any:
    """The storage of the ``storefront serve`` running on ``data_dir`` (its ``serve.json``)."""
    from service.storage.redis_storage import RedisStorage

    state = json.loads((data_dir / "serve.json").read_text())
    return RedisStorage.from_url(state["redis_url"], state["prefix"])


def _wait_tier(port: int, body: bytes, tier: str, timeout: float = 30.0) -> None:
    """Rank until every slot is served from ``tier`` (the workers reload the ladder states within a second)."""
    deadline = time.monotonic() + timeout
    seen: set[Any] = set()
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", _PATH, body=body, headers=_HEADERS)
            page = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        seen = {s["tier"] for s in page.get("slots", []) if s.get("item") is not None}
        if seen == {tier}:
            return
        time.sleep(0.2)
    raise BenchError(f"the service did not switch every slot to {tier} within {timeout:g}s (serving {seen})")


def _report(
    config: StoreConfig,
    args: argparse.Namespace,
    loader: str,
    measured: dict[str, tuple[dict[str, list[LoadResult]], dict[str, Any]]],
    unlogged: float | None,
) -> dict[str, Any]:
    import gunicorn
    import numpy

    tiers: dict[str, dict[str, Any]] = {}
    problems = []
    for tier, (runs, fixed) in measured.items():
        targets: dict[str, dict[str, Any]] = {}
        for target, results in runs.items():
            targets[target] = {
                "runs": len(results),
                "requests": sum(r.requests for r in results),
                "rps": round(statistics.median(r.rps for r in results), 1),
                "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in results), 3),
                "non_2xx": sum(r.non_2xx for r in results),
                "socket_errors": sum(r.socket_errors for r in results),
                "cpu_ms_per_request": _median_or_none([r.cpu_ms_per_request for r in results]),
                "each": [r.to_dict() for r in results],
            }
            if targets[target]["non_2xx"] or targets[target]["socket_errors"]:
                problems.append(f"{tier} {target}: {targets[target]['non_2xx']} non-2xx responses, "
                                f"{targets[target]['socket_errors']} socket errors")  # fmt: skip
        if fixed["non_2xx"] or fixed["errors"]:
            problems.append(f"{tier} fixed rate: {fixed['non_2xx']} non-2xx responses, {fixed['errors']} failed")
        ratio = targets["rank"]["rps"] / targets["twin"]["rps"] if targets["twin"]["rps"] else 0.0
        twin_cpu, rank_cpu = targets["twin"]["cpu_ms_per_request"], targets["rank"]["cpu_ms_per_request"]
        tiers[tier] = {
            "targets": targets,
            "ratio": round(ratio, 3),
            # What the ratio would be if the servers alone used the whole machine: less sensitive to other tenants.
            "cpu_ratio": round(twin_cpu / rank_cpu, 3) if twin_cpu and rank_cpu else None,
            "fixed_rate": fixed,
            "targets_met": {
                "ratio": ratio >= RATIO_TARGET,
                "p99_at_rate": fixed["p99_ms"] <= P99_TARGET_MS and fixed["achieved_rps"] >= 0.95 * args.rate,
            },
        }
    if unlogged:
        problems.append(f"rank: {unlogged:g} pages answered but not logged (storage errors; see /metrics)")
    return {
        "config": str(args.config),
        "store": config.name,
        "items": len(config.catalog.items),
        "loader": loader,
        "gunicorn": {
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": "gthread" if args.threads > 1 else "sync",
        },
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "versions": {
            "python": sys.version.split()[0],
            "flask": _version("flask"),
            "gunicorn": gunicorn.__version__,
            "numpy": numpy.__version__,
        },
        "tiers": tiers,
        "problems": problems,
        "ok": all(all(t["targets_met"].values()) for t in tiers.values()) and not problems,
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None


def format_report(report: dict[str, Any]) -> str:
    g = report["gunicorn"]
    v = report["versions"]
    lines = [
        f"storefront bench rank — {report['store']} ({report['config']}), {report['items']} items, gunicorn "
        f"{g['workers']} × {g['worker_class']}{'' if g['threads'] == 1 else ' ' + str(g['threads']) + ' threads'}, "
        f"{report['connections']} connections, loader {report['loader']}, {report['cpus']} CPUs",
        f"Python {v['python']}, Flask {v['flask']}, gunicorn {v['gunicorn']}, numpy {v['numpy']}",
    ]
    for tier, t in report["tiers"].items():
        lines += [
            "",
            f"every slot on {tier}",
            f"{'target':<8}{'runs':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
            f"{'server CPU ms/req':>19}",
        ]
        for name, target in t["targets"].items():
            cpu = "n/a" if target["cpu_ms_per_request"] is None else f"{target['cpu_ms_per_request']:.3f}"
            lines.append(
                f"{name:<8}{target['runs']:>6}{target['requests']:>10}{target['rps']:>10.0f}{target['p50_ms']:>9.2f}"
                f"{target['p99_ms']:>9.2f}{target['non_2xx'] + target['socket_errors']:>9}{cpu:>19}"
            )
        fixed = t["fixed_rate"]
        met = t["targets_met"]
        lines += [
            f"ratio rank/twin = {t['ratio']:.2f} (target ≥ {RATIO_TARGET}){'' if met['ratio'] else '  MISSED'}",
            f"  server CPU per request, twin/rank = "
            f"{'n/a' if t['cpu_ratio'] is None else format(t['cpu_ratio'], '.2f')} "
            f"(the ratio on a machine the servers had to themselves, load generator aside)",
            f"p99 at {fixed['rate']:g} req/s = {fixed['p99_ms']:.1f} ms (target ≤ {P99_TARGET_MS:g} ms)"
            f"{'' if met['p99_at_rate'] else '  MISSED'}",
            f"  p50 {fixed['p50_ms']:.2f} ms, p99.9 {fixed['p999_ms']:.1f} ms, max {fixed['max_ms']:.1f} ms, "
            f"{fixed['requests']} requests in {fixed['duration']:g}s, achieved {fixed['achieved_rps']:.0f} req/s",
        ]
    for problem in report["problems"]:
        lines.append(f"!!! ERRORS: {problem}")
    return "\n".join(lines)


def _storage_errors(port: int) -> float | None:
    """Pages the service answered without logging (``storefront_decision_log_dropped_total``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith("storefront_decision_log_dropped_total"):
            total += float(line.rpartition(" ")[2])
    return total


def _drop_prefix(url: str, prefix: str) -> None:
    import redis

    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(url, socket_timeout=10)
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        client.close()


# --------------------------------------------------------------------------- closed loop: wrk


_WRK_SCRIPT = """
local bodies = {%(bodies)s}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  requests_ = {}
  for k, body in ipairs(bodies) do
    local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
    requests_[k] = wrk.format("POST", nil, headers, body)
  end
  n_ = #requests_
  i_ = (id * 397) %% n_
end

function request()
  i_ = i_ %% n_ + 1
  return requests_[i_]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


class _WrkLoader:
    """Closed-loop load with ``wrk`` and a Lua script cycling through the bodies."""

    def __init__(self, work: Path, bodies: Sequence[bytes]):
        quoted = ",".join(json.dumps(b.decode()) for b in bodies)  # a JSON string is a valid Lua string here
        self.script = work / "bench.lua"
        self.script.write_text(_WRK_SCRIPT % {"bodies": quoted, "key": _KEY})

    def run(self, target: str, port: int, connections: int, duration: float, requests: int | None = None) -> LoadResult:
        threads = max(1, min(connections, os.cpu_count() or 1))
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(self.script), f"http://127.0.0.1:{port}{_PATH}"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=duration + 60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        line = next((x for x in out.decode().splitlines() if x.startswith("BENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({proc.returncode}): {err.decode()}{out.decode()}")
        count, micros, connect, read, write, status, timeout, p50, p99, worst = (int(x) for x in line.split()[1:])
        return LoadResult(
            target, count, micros / 1e6, p50 / 1e3, p99 / 1e3, worst / 1e3,
            non_2xx=status, socket_errors=connect + read + write + timeout,
        )  # fmt: skip


# --------------------------------------------------------------------------- closed loop: Python


def _pool_worker_signals() -> None:
    # The parent stops the pool on Ctrl-C (workers print no tracebacks of their own) and terminates it with
    # SIGTERM, which must not reach the parent's SIGTERM handler inherited through fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool(processes: int) -> Any:
    return multiprocessing.get_context("fork").Pool(processes, initializer=_pool_worker_signals)


class _PythonLoader:
    """Closed-loop load from several processes, each with a few keep-alive connections."""

    def __init__(self, bodies: Sequence[bytes]):
        self.bodies = list(bodies)

    def run(self, target: str, port: int, connections: int, duration: float, requests: int | None = None) -> LoadResult:
        procs = max(1, min(connections, os.cpu_count() or 1))
        per_proc = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
        budget = [None if requests is None else requests * n // connections for n in per_proc]
        pool = _pool(procs)
        try:
            started = time.monotonic()
            parts = pool.starmap(
                _closed_loop_worker,
                [(port, self.bodies, per_proc[i], duration, budget[i], i) for i in range(procs)],
            )
            elapsed = time.monotonic() - started
        finally:
            pool.terminate()
            pool.join()
        latencies = sorted(x for part in parts for x in part[0])
        elapsed = max(max(part[3] for part in parts), 1e-9) if parts else elapsed
        return LoadResult(
            target, len(latencies), elapsed, _percentile(latencies, 50) * 1e3, _percentile(latencies, 99) * 1e3,
            (latencies[-1] if latencies else 0.0) * 1e3, non_2xx=sum(p[1] for p in parts),
            socket_errors=sum(p[2] for p in parts),
        )  # fmt: skip


def _post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", _PATH, body=body, headers=_HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def _closed_loop_worker(
    port: int, bodies: list[bytes], connections: int, duration: float, budget: int | None, seed: int
) -> tuple[list[float], int, int, float]:
    """Latencies (s), non-2xx count, failed-request count and elapsed seconds of one process's connections."""
    latencies: list[float] = []
    counts = [0, 0]  # non-2xx, failed
    lock = threading.Lock()
    remaining = [budget if budget is not None else -1]
    started = time.monotonic()
    deadline = started + duration

    def take() -> bool:
        with lock:
            if remaining[0] == 0:
                return False
            remaining[0] -= 1
            return True

    def connection(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = (seed * 31 + k * 397) % len(bodies)
        mine = []
        while time.monotonic() < deadline and take():
            i = (i + 1) % len(bodies)
            t0 = time.perf_counter()
            try:
                status = _post(conn, bodies[i])
            except (OSError, http.client.HTTPException):
                conn.close()
                with lock:
                    counts[1] += 1
                continue
            mine.append(time.perf_counter() - t0)
            if not 200 <= status < 300:
                with lock:
                    counts[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=connection, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, counts[0], counts[1], time.monotonic() - started


# --------------------------------------------------------------------------- open loop


def open_loop(
    host: str, port: int, bodies: Sequence[bytes], rate: float, duration: float, connections: int = 16
) -> dict[str, Any]:
    """Send ``rate`` requests per second for ``duration`` seconds, each on its own schedule.

    The schedule is spread over ``connections`` connections (in a few
    processes), request ``k`` of connection ``c`` being due at
    ``start + (c + k × connections) / rate``.  A connection that falls behind
    sends at once, and its latency still counts from the due time: a server
    that stalls for 100 ms shows up as 100 ms of latency on every request due
    in that time, not as one slow request.
    """
    procs = max(1, min(connections, os.cpu_count() or 1))
    groups = [list(range(c, connections, procs)) for c in range(procs)]
    start = time.monotonic() + 0.5  # let every process get ready
    pool = _pool(procs)
    try:
        parts = pool.starmap(
            _open_loop_worker,
            [(host, port, list(bodies), rate, duration, connections, group, start) for group in groups],
        )
    finally:
        pool.terminate()
        pool.join()
    latencies = sorted(x for part in parts for x in part[0])
    last_done = max((part[3] for part in parts), default=start)
    sent = sum(part[4] for part in parts)
    span = max(last_done - start, 1e-9)
    return {
        "rate": rate,
        "duration": duration,
        "requests": sent,
        "achieved_rps": round(len(latencies) / span, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 99) * 1e3, 3),
        "p999_ms": round(_percentile(latencies, 99.9) * 1e3, 3),
        "max_ms": round((latencies[-1] if latencies else 0.0) * 1e3, 3),
        "non_2xx": sum(part[1] for part in parts),
        "errors": sum(part[2] for part in parts),
        "connections": connections,
    }


def _open_loop_worker(
    host: str,
    port: int,
    bodies: list[bytes],
    rate: float,
    duration: float,
    connections: int,
    group: list[int],
    start: float,
) -> tuple[list[float], int, int, float, int]:
    """Latencies from due time (s), non-2xx, failures, time of the last answer, requests sent."""
    latencies: list[float] = []
    counts = [0, 0, 0]  # non-2xx, failed, sent
    lock = threading.Lock()
    last_done = [start]
    interval = connections / rate
    end = start + duration

    def connection(c: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        mine = []
        failed = non_2xx = sent = 0
        due = start + c / rate
        i = c * 397 % len(bodies)
        while due < end:
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            i = (i + 1) % len(bodies)
            sent += 1
            try:
                status = _post(conn, bodies[i])
            except (OSError, http.client.HTTPException):
                conn.close()
                failed += 1
            else:
                mine.append(time.monotonic() - due)
                if not 200 <= status < 300:
                    non_2xx += 1
            due += interval
        done_at = time.monotonic()
        conn.close()
        with lock:
            latencies.extend(mine)
            counts[0] += non_2xx
            counts[1] += failed
            counts[2] += sent
            last_done[0] = max(last_done[0], done_at)

    threads = [threading.Thread(target=connection, args=(c,)) for c in group]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, counts[0], counts[1], last_done[0], counts[2]
