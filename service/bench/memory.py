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
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_bench_memory)


def _rss() -> int:
    with open("/proc/self/statm") as f:
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
        app = create_app(config_path, storage=storage, settings={"LOG_FLUSH_SECONDS": 0.005})
        client = app.test_client()
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


def cmd_bench_memory(args: argparse.Namespace) -> int:
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
