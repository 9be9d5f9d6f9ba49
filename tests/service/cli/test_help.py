"""Every command's and subcommand's ``--help`` renders (a stray ``%`` in a help string breaks argparse)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from service.cli import build_parser


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_help_renders() -> None:
    root = build_parser()
    seen = list(parsers(root))
    assert ("bench", "quality") in seen and len(seen) > 10
    for path in seen:
        parser = root
        for name in path:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        assert parser.format_help(), path
