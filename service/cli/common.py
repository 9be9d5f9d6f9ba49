"""The plumbing every ``storefront`` command shares (where ``serve`` keeps its state, common flags, refusals)."""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path
from typing import Any

from bandit.config import StoreConfig
from bandit.eventlog.jsonl import LogError, read_joined

DEFAULT_DATA_DIR = ".storefront"
STATE_FILE = "serve.json"


class CommandError(Exception):
    """A refusal to print on stderr (no traceback) with the command's exit status: 2 for usage, 1 for bad data."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def log_level_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def redis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL, else the embedded one of --data-dir)")
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="data folder of `storefront serve` (default: %(default)s)"
    )


def storage_from(args: argparse.Namespace, config: StoreConfig | None) -> Any:
    """The Redis storage of ``--redis-url``, ``$REDIS_URL`` or the running ``storefront serve`` (its serve.json)."""
    from service.storage.redis_storage import RedisStorage

    state = serve_state(args.data_dir)
    url = args.redis_url or os.environ.get("REDIS_URL") or state.get("redis_url")
    if not url:
        raise CommandError(
            f"no Redis to read: pass --redis-url, set REDIS_URL, or run `storefront serve` (it writes "
            f"{Path(args.data_dir) / STATE_FILE})",
            status=1,
        )
    prefix = os.environ.get("STOREFRONT_REDIS_PREFIX") or (
        f"sb:{config.name}:" if config else state.get("prefix", "sb:store:")
    )
    return RedisStorage.from_url(url, prefix, socket_timeout=30.0)


def serve_state(data_dir: str) -> dict[str, Any]:
    """What ``storefront serve`` wrote about itself in ``data_dir`` (config, Redis URL, prefix), or {}."""
    path = Path(data_dir) / STATE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def read_log(path: str) -> list[dict[str, Any]]:
    """A joined-log JSONL file, or a :class:`CommandError` (status 1) naming each bad line.

    The records are kept for the rest of the command, so they are moved out of the cyclic collector's sight
    (``gc.freeze``): a command that reads a month of records would otherwise walk all of them on every full
    collection while it trains and scores."""
    try:
        records = read_joined(path)
    except LogError as exc:
        raise CommandError(str(exc), status=1) from None
    gc.freeze()
    return records
