"""``storefront tree show|export``: a slot's learned tree as YAML rules, from the running service or trained offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bandit.config import StoreConfig, load_config
from service.cli.common import DEFAULT_DATA_DIR, CommandError, read_log, serve_state, storage_from


def register(top: Any, bench: Any) -> None:
    tree = top.add_parser("tree", help="a slot's learned tree as rules", description="Read a learned tree as rules.")
    commands = tree.add_subparsers(title="commands", metavar="COMMAND")
    for name, help_text in (("show", "print the tree as YAML rules"), ("export", "write the tree as YAML rules")):
        p = commands.add_parser(
            name, help=help_text,
            description=f"{help_text.capitalize()}: the slot's current tree from the running service's Redis "
            "(the challenger's if there is one, else the incumbent's), or, with --log, one trained offline.",
        )  # fmt: skip
        p.add_argument("slot", metavar="SLOT")
        if name == "export":
            p.add_argument("--out", required=True, help="YAML file to write ('-' for stdout)")
        p.add_argument("--log", help="train a tree offline on this joined-log JSONL instead")
        p.add_argument("--config", help="store config (default: the one `storefront serve` is running)")
        p.add_argument("--seed", type=int, default=0, help="reward model seed for --log (default 0)")
        p.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL, else the embedded one of --data-dir)")
        p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="data folder of `storefront serve`")
        p.set_defaults(func=cmd_tree, tree_command=name)


def _tree_config(args: argparse.Namespace) -> StoreConfig:
    if args.config:
        return load_config(args.config)
    path = serve_state(args.data_dir).get("config")
    if not path:
        raise CommandError("no config: pass --config, or run `storefront serve` (its serve.json names the config)")
    return load_config(path)


def stored_snapshot(args: argparse.Namespace, config: StoreConfig, slot: str) -> dict[str, Any]:
    """The slot's current tree snapshot in Redis: the challenger's if it is a tree, else the incumbent's."""
    storage = storage_from(args, config)
    stored = storage.load_ladders([slot]).get(slot)
    if stored is None or stored.state is None:
        raise CommandError(
            f"slot {slot}: no tree yet (no ladder state in Redis under {storage.prefix}ladder:{slot})", 1
        )
    for arm in ("challenger", "incumbent"):
        spec = stored.state.get(arm)
        if isinstance(spec, dict) and spec.get("tier") == "tree" and spec.get("snapshot"):
            snapshot: dict[str, Any] = spec["snapshot"]
            return snapshot
    raise CommandError(f"slot {slot}: no tree yet (stage {stored.state.get('stage')!r}; it is served by its rules)", 1)


def cmd_tree(args: argparse.Namespace) -> int:
    from bandit.learners.tree import train_tree
    from bandit.policies.tree import snapshot_as_rules_yaml

    if not getattr(args, "tree_command", None):
        raise CommandError("usage: storefront tree {show,export} SLOT ...")
    config = _tree_config(args)
    try:
        config.slot(args.slot)
    except KeyError:
        raise CommandError(f"unknown slot {args.slot!r}; the config has: {', '.join(config.slot_names)}") from None
    if args.log:
        rows = [r for r in read_log(args.log) if r["slot"] == args.slot]
        try:
            snapshot = train_tree(config, args.slot, rows, seed=args.seed)
        except ValueError as exc:
            raise CommandError(f"slot {args.slot}: {exc}", 1) from None
    else:
        snapshot = stored_snapshot(args, config, args.slot)
    text = snapshot_as_rules_yaml(snapshot)
    if args.tree_command == "show" or args.out == "-":
        print(text, end="")
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote the tree of slot {args.slot} ({len(snapshot['rules'])} rules) to {args.out}", file=sys.stderr)
    return 0
