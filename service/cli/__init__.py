"""The ``storefront`` command.

``storefront check``     validate config files
``storefront serve``     run the API (gunicorn) with the learner, on an embedded Redis unless REDIS_URL is set
``storefront learn``     run the learner alone (for deployments with several API replicas)
``storefront export``    write the joined log as JSONL
``storefront evaluate``  off-policy estimates of a policy's value on a joined log
``storefront replay``    off-policy dry run of a new config on a joined log, rule by rule
``storefront tree``      show or export a slot's learned tree as rules
``storefront bench``     benchmarks that print numbers (``rank`` here; the simulator adds its own)

Each module here adds its command with ``register(top, bench)``, where ``top``
holds ``storefront X`` and ``bench`` holds ``storefront bench X``.  Other
packages add theirs through the ``storefront.commands`` entry-point group
with a function of the same shape: that is how ``simulate``, ``bench
simulate``, ``bench ladder`` and ``bench ope`` arrive from the simulator
without the service importing it.

A command returns its exit status.  A config that does not load, a log with
bad lines or a refused option is printed without a traceback: exit 2 when the
command could not start (a config or an option), 1 when its data was refused
(``check`` finding problems, a bad log line).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from bandit.config import ConfigError
from service.bench import memory, rank
from service.cli import check, evaluate, export, keys, learn, serve, tree
from service.cli.common import CommandError

COMMAND_GROUP = "storefront.commands"
# The order of `storefront --help`: the service's commands, benchmarks, the simulator's, then the log's.
_BEFORE_PLUGINS = (check, serve, keys, learn, export, rank, memory)
_AFTER_PLUGINS = (evaluate, tree)
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
    except ConfigError as exc:
        print(exc.refusal(), file=sys.stderr)
        return 2
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


class _Benchmarks:
    """The ``storefront bench`` subparsers, created when the first benchmark registers (so help lists it there)."""

    def __init__(self, top: Any):
        self._top = top
        self._sub: Any = None

    def add_parser(self, *args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        if self._sub is None:
            bench = self._top.add_parser("bench", help="benchmarks that print numbers", description="Benchmarks.")
            self._sub = bench.add_subparsers(title="benchmarks", metavar="BENCHMARK")
        parser: argparse.ArgumentParser = self._sub.add_parser(*args, **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storefront", description="A self-hosted contextual-bandit service for a web store's page slots."
    )
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    bench = _Benchmarks(top)
    for module in _BEFORE_PLUGINS:
        module.register(top, bench)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as exc:  # a plugin whose dependencies are missing must not break the others
            log.warning("storefront commands from %s not loaded: %s", entry.value, exc)
            continue
        register(top, bench)
    for module in _AFTER_PLUGINS:
        module.register(top, bench)
    return parser
