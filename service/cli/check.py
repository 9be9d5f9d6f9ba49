"""``storefront check``: validate config files, every problem with its file, line and field."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bandit.config import ConfigError, load_config


def register(top: Any, bench: Any) -> None:
    p = top.add_parser("check", help="validate config files", description="Validate store config files.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every file loads, 1 when one has problems (they are all listed)."""
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
