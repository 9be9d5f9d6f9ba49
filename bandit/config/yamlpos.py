"""YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of two
duplicate keys.  Config errors must name the file, the line and the field, so
this module composes the node tree itself and returns plain Python data plus a
map from each field path to its 1-based line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: where it is and what is wrong."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ConfigError(ValueError):
    """A config was refused; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))

    def refusal(self) -> str:
        """What a command prints when it cannot start: the file, then every problem on a line."""
        source = self.problems[0].source if self.problems else "config"
        return f"{source}: refused\n{self}"


def format_path(path: Path) -> str:
    """``("slots", 0, "rules", 2)`` → ``"slots[0].rules[2]"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def load(text: str, source: str) -> tuple[Any, dict[Path, int]]:
    """Parse ``text`` into plain data and a ``{path: line}`` map.

    Raises
    ------
    ConfigError
        On a YAML syntax error, a duplicate key or a non-string key.

    Examples
    --------
    >>> data, lines = load("a:\\n  b: [1, 2]\\n", "x.yaml")
    >>> data, lines[("a", "b", 1)]
    ({'a': {'b': [1, 2]}}, 2)
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(source, line, "", f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every parser error is marked in practice
        raise ConfigError([Problem(source, None, "", f"not valid YAML: {exc}")]) from None
    lines: dict[Path, int] = {}
    problems: list[Problem] = []

    def walk(node: yaml.Node, path: Path) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                key_line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    problems.append(Problem(source, key_line, format_path(path), f"key {key!r} must be a string"))
                    continue
                if key in out:
                    problems.append(
                        Problem(source, key_line, format_path((*path, key)), "duplicate key (it is already set above)")
                    )
                    continue
                out[key] = walk(value_node, (*path, key))
                # A field is where its key is written: a block value starts on the next line.
                lines[(*path, key)] = key_line
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(child, (*path, i)) for i, child in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        data = walk(node, ()) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError([Problem(source, mark.line + 1 if mark else None, "", str(exc.problem))]) from None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(problems)
    return data, lines
