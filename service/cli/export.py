"""``storefront export``: the joined log as JSONL (the format is in docs/events.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bandit.config import load_config
from service.cli.common import log_level_arg, redis_args, serve_state, storage_from


def register(top: Any, bench: Any) -> None:
    p = top.add_parser(
        "export",
        help="write the joined log as JSONL",
        description="Write joined events (decision + reward) as JSONL; the format is in docs/events.md.",
    )
    p.add_argument("--out", required=True, help="output file ('-' for stdout)")
    p.add_argument("--config", help="store config (default: the one `storefront serve` is running)")
    redis_args(p)
    p.add_argument("--since", default="-", help="only records after this stream id (default: all)")
    log_level_arg(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    config = None
    if args.config:
        config = load_config(args.config)
    elif not os.environ.get("STOREFRONT_REDIS_PREFIX"):
        state_config = serve_state(args.data_dir).get("config")
        config = load_config(state_config) if state_config else None
    storage = storage_from(args, config)
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
