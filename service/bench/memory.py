"""``storefront bench memory``: Redis bytes per page waiting for its window, and the worker's memory over many ranks.

The app runs in this process on an embedded Redis (no gunicorn, no network:
what is measured is what a page costs, not the transport), with the real
write-behind.  ``--pages`` ranks (varied contexts drawn from the config's
schema) are written and left pending — the window of a real store is hours or
days, so every page waits in Redis, which is what sizes it.  Printed:
Redis ``used_memory`` per page (everything: the event hash, the join queue,
counters, the deflate dictionaries), the event hash alone (``MEMORY USAGE``),
the packed event beside its JSON, and this process's resident memory before
and after (growth in percent, after a warm-up of ``--pages``/10).  Targets
(reported, not asserted): ≤ 1 KB per page; RSS growth ≤ 10%.

``--with-learner`` is the long-run form (issue 11: "worker RSS before and
after 1,000,000 ranks with rewards and the learner running"): the reward
window is cut to ``--window`` seconds, a share of the pages gets a click, an
add-to-cart or a purchase posted right after its rank, and the real learner
(``storefront learn``, its own process on the same Redis) joins the pages as
their windows close and trains the ladder's challengers from the joined log
as configured.  Printed: the worker's (this process's) and the learner's
resident memory and Redis ``used_memory`` at every tenth of the run after the
warm-up, their growth, and that every page was joined.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_BYTES = 1024
TARGET_GROWTH = 0.10
_DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "storefront.yaml"


def register(top: Any, bench: Any) -> None:
    p = bench.add_parser(
        "memory",
        help="Redis bytes per pending page, and the worker's memory over many ranks",
        description="Rank pages in process on an embedded Redis with the real write-behind, leave them pending, "
        f"and print Redis memory per page (target ≤ {TARGET_BYTES} B) and this process's RSS growth "
        f"(target ≤ {TARGET_GROWTH:.0%}).",
    )
    p.add_argument("--config", default=str(_DEFAULT_CONFIG), help="store config YAML (default: the example store)")
    p.add_argument("--pages", type=int, default=50_000, help="pages ranked (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the contexts (default: %(default)s)")
    p.add_argument("--with-learner", action="store_true",
                   help="post rewards for a share of the pages and run the learner beside the ranks, with a short "
                        "reward window: memory over a long run (try --pages 1000000)")  # fmt: skip
    p.add_argument("--window", type=float, default=2.0, help="reward window with --with-learner, seconds "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--reward-share", type=float, default=0.3, help="share of pages that get a reward with "
                   "--with-learner (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_bench_memory)


_KEY = "sk_bench_memory_0123456789abcdef"  # in process: the key the bench's app knows and its client sends


def _keys() -> Any:
    from service.http.access import Keys, parse_keys

    return Keys(parse_keys([f"backend bench {_KEY}"], "bench memory"))


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(config_path: str, pages: int, seed: int) -> dict[str, Any]:
    from bandit.config import load_config
    from service.bench.rank import make_bodies
    from service.http.app import create_app
    from service.storage import RedisStorage
    from service.storage.codec import event_json
    from service.storage.embedded import EmbeddedRedis

    bodies = make_bodies(load_config(config_path), 1000, seed)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=False) as server:
        storage = RedisStorage.from_url(server.url, "bench:")
        app = create_app(config_path, storage=storage, settings={"LOG_FLUSH_SECONDS": 0.005, "API_KEYS": _keys()})
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {_KEY}"
        writer = app.extensions["storefront.writer"]
        base = storage.client.info("memory")["used_memory"]
        warmup = max(1, pages // 10)
        started = time.perf_counter()
        rss_before = 0
        for i in range(pages + warmup):
            if i == warmup:
                rss_before = _rss()
            response = client.post("/v1/rank", data=bodies[i % len(bodies)], content_type="application/json")
            if response.status_code != 200:
                raise RuntimeError(f"rank answered {response.status_code}: {response.get_data(as_text=True)}")
        writer.flush()
        elapsed = time.perf_counter() - started
        rss_after = _rss()
        stored = storage.due_length()
        used = storage.client.info("memory")["used_memory"] - base
        keys = [k for _, k in zip(range(1000), storage.client.scan_iter(match="bench:ev:*", count=1000), strict=False)]
        hashes = [storage.client.memory_usage(k) or 0 for k in keys]
        packed = [storage.client.hget(k, "d") for k in keys]
        plain = [len(event_json(storage.unpack_event(p))) for p in packed]
        writer.close()
        storage.client.close()
    return {
        "config": config_path, "pages": stored, "seconds": round(elapsed, 1),
        "redis_bytes_per_page": round(used / stored, 1),
        "event_hash_bytes": round(sum(hashes) / len(hashes), 1),
        "packed_event_bytes": round(sum(map(len, packed)) / len(packed), 1),
        "json_event_bytes": round(sum(plain) / len(plain), 1),
        "rss_before_mb": round(rss_before / 2**20, 1), "rss_after_mb": round(rss_after / 2**20, 1),
        "rss_growth": round(rss_after / rss_before - 1, 4),
    }  # fmt: skip


def measure_with_learner(
    config_path: str, pages: int, seed: int, window: float = 2.0, reward_share: float = 0.3
) -> dict[str, Any]:
    """Ranks with rewards and the learner running (see the module's docstring); returns the memory trajectory."""
    import random
    import subprocess
    import sys

    import yaml

    from bandit.config import load_config
    from service.bench.rank import make_bodies
    from service.http.app import create_app
    from service.storage import RedisStorage
    from service.storage.embedded import EmbeddedRedis

    config = load_config(config_path)
    bodies = make_bodies(config, 1000, seed)
    events = sorted(config.reward.events) or ["click"]
    rng = random.Random(seed)
    prefix = "bench:"
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistent=False) as server:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        data["reward"]["window"] = f"{window:g}s"
        short = Path(tmp) / "store.yaml"
        short.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
        env["STOREFRONT_REDIS_PREFIX"] = prefix
        log_path = Path(tmp) / "learner.log"
        with log_path.open("wb") as log:
            learner = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "learn", str(short), "--redis-url", server.url,
                 "--interval", "0.5", "--join-grace", "0.5", "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        storage = RedisStorage.from_url(server.url, prefix)
        app = create_app(str(short), storage=storage, settings={"LOG_FLUSH_SECONDS": 0.005, "API_KEYS": _keys()})
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {_KEY}"
        writer = app.extensions["storefront.writer"]
        warmup = max(1, pages // 10)
        marks = {warmup + k * pages // 10 for k in range(10)}
        trajectory: list[dict[str, Any]] = []
        rewards = 0

        def sample(ranks: int) -> None:
            if learner.poll() is not None:
                raise RuntimeError(f"the learner exited with {learner.returncode}:\n{log_path.read_text()[-3000:]}")
            trajectory.append({
                "ranks": ranks, "worker_mb": round(_rss() / 2**20, 1),
                "learner_mb": round(_rss(learner.pid) / 2**20, 1),
                "redis_mb": round(storage.client.info("memory")["used_memory"] / 2**20, 1),
                "pending": storage.due_length(),
            })  # fmt: skip

        started = time.perf_counter()
        try:
            for i in range(pages + warmup):
                if i in marks:
                    sample(i)
                response = client.post("/v1/rank", data=bodies[i % len(bodies)], content_type="application/json")
                if response.status_code != 200:
                    raise RuntimeError(f"rank answered {response.status_code}: {response.get_data(as_text=True)}")
                if rng.random() < reward_share:
                    page = response.get_json()
                    reward = {"event_id": page["event_id"], "slot": rng.choice(page["slots"])["slot"],
                              "event": rng.choice(events)}  # fmt: skip
                    answer = client.post("/v1/reward", json=reward)
                    if answer.status_code != 202:
                        raise RuntimeError(f"reward answered {answer.status_code}: {answer.get_data(as_text=True)}")
                    rewards += 1
            writer.flush()
            elapsed = time.perf_counter() - started
            deadline = time.monotonic() + window + 60
            while storage.due_length() and time.monotonic() < deadline:  # the last windows close, the learner joins
                time.sleep(0.5)
            sample(pages + warmup)
            counts = storage.counts()
        finally:
            learner.terminate()
            learner.wait(30)
            writer.close()
            storage.client.close()
    first, half, last = trajectory[0], trajectory[len(trajectory) // 2], trajectory[-1]
    joined = sum(v for k, v in counts.items() if k.startswith("joined:"))
    logged = sum(v for k, v in counts.items() if k.startswith("decisions:"))
    return {
        "config": config_path, "pages": pages + warmup, "rewards": rewards, "seconds": round(elapsed, 1),
        "window_seconds": window, "logged_decisions": logged, "joined_decisions": joined,
        "pending_at_end": last["pending"], "trajectory": trajectory,
        "worker_growth": round(last["worker_mb"] / first["worker_mb"] - 1, 4),
        "learner_growth": round(last["learner_mb"] / first["learner_mb"] - 1, 4),
        # The learner keeps each slot's training window (train_window joined records) in memory; it fills over
        # the first part of a run, so its growth is also shown from the run's half, when the windows are full.
        "learner_growth_second_half": round(last["learner_mb"] / half["learner_mb"] - 1, 4),
        "worker_growth_second_half": round(last["worker_mb"] / half["worker_mb"] - 1, 4),
    }  # fmt: skip


def _print_with_learner(result: dict[str, Any]) -> None:
    print(f"storefront bench memory --with-learner — {result['config']}, {result['pages']:,} pages ranked, "
          f"{result['rewards']:,} rewards, {result['window_seconds']:g} s window, {os.cpu_count()} CPUs, "
          f"{result['seconds']:.0f} s")  # fmt: skip
    print(f"  {'ranks':>10}  {'worker MiB':>10}  {'learner MiB':>11}  {'Redis MiB':>9}  {'pending':>8}")
    for row in result["trajectory"]:
        print(f"  {row['ranks']:>10,}  {row['worker_mb']:>10.1f}  {row['learner_mb']:>11.1f}  {row['redis_mb']:>9.1f}  "
              f"{row['pending']:>8,}")  # fmt: skip
    half = result["trajectory"][len(result["trajectory"]) // 2]["ranks"]
    for who in ("worker", "learner"):
        growth, later = result[f"{who}_growth"], result[f"{who}_growth_second_half"]
        verdict = "met" if growth <= TARGET_GROWTH else "MISSED"
        print(f"{who:>7} RSS growth after the warm-up {growth:+.1%} (target ≤ +{TARGET_GROWTH:.0%}) {verdict}; "
              f"from {half:,} ranks on {later:+.1%}")  # fmt: skip
    print("  (the learner holds each slot's training window in memory: it grows until the windows are full)")
    print(f"decisions logged {result['logged_decisions']:,}, joined {result['joined_decisions']:,}, "
          f"pending at the end {result['pending_at_end']:,}")  # fmt: skip


def cmd_bench_memory(args: argparse.Namespace) -> int:
    if args.with_learner:
        steady = measure_with_learner(args.config, args.pages, args.seed, args.window, args.reward_share)
        if args.json:
            print(json.dumps(steady, indent=2))
        else:
            _print_with_learner(steady)
        return 0
    result = measure(args.config, args.pages, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    per_page, growth = result["redis_bytes_per_page"], result["rss_growth"]
    print(f"storefront bench memory — {result['config']}, {result['pages']:,} pages pending, {os.cpu_count()} CPUs")
    print(f"Redis used_memory per page     {per_page:8.0f} B   (target ≤ {TARGET_BYTES} B)  "
          f"{'met' if per_page <= TARGET_BYTES else 'MISSED'}")  # fmt: skip
    print(f"  event hash (MEMORY USAGE)    {result['event_hash_bytes']:8.0f} B")
    print(f"  the page packed / as JSON    {result['packed_event_bytes']:8.0f} B / {result['json_event_bytes']:.0f} B")
    print(f"  per million pages            {per_page * 1e6 / 2**30:8.2f} GiB")
    verdict = "met" if growth <= TARGET_GROWTH else "MISSED"
    print(f"worker RSS {result['rss_before_mb']} → {result['rss_after_mb']} MiB over {result['pages']:,} ranks: "
          f"{growth:+.1%} (target ≤ +{TARGET_GROWTH:.0%})  {verdict}")  # fmt: skip
    return 0
