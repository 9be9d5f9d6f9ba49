"""Field checks that collect every problem with its file, line and field path, instead of stopping at the first.

:class:`Checker` holds the generic checks (mappings with known keys, lists,
names, numbers, durations); :class:`bandit.config.parse.ConfigChecker` adds
the store's sections, and the simulator's scenario parser builds on that.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from bandit.config.model import format_number, parse_duration
from bandit.config.yamlpos import Path, Problem, format_path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class Checker:
    """Walks the plain data, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, lines: dict[Path, int]):
        self.source = source
        self.lines = lines
        self.problems: list[Problem] = []

    # ---- helpers -----------------------------------------------------------------

    def line(self, path: Path) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.source, self.line(path), format_path(path), message))

    def mapping(
        self, value: Any, path: Path, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping with keys: {', '.join(required + optional)}")
            return None
        allowed = required + optional
        for key in value:
            if key not in allowed:
                hint = close_match(key, allowed)
                self.error((*path, key), f"unknown key{hint}; allowed here: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.error(path, f"missing required key '{key}'")
        return value

    def listing(self, value: Any, path: Path, min_len: int = 0) -> list[Any]:
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return []
        if len(value) < min_len:
            self.error(path, f"must have at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
        return value

    def name(self, value: Any, path: Path, what: str = "name") -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not _NAME_RE.match(value):
            self.error(path, f"{what} must be 1-64 characters of letters, digits, '_', '-', '.', ':' (got {value!r})")
            return None
        return value

    def number(
        self,
        value: Any,
        path: Path,
        lo: float | None = None,
        hi: float | None = None,
        integer: bool = False,
        lo_open: bool = False,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.error(path, "must be a finite number")
            return None
        if integer and value != int(value):
            self.error(path, "must be a whole number")
            return None
        if lo is not None and (value <= lo if lo_open else value < lo):
            self.error(path, f"must be {'>' if lo_open else '≥'} {format_number(lo)} (got {value})")
            return None
        if hi is not None and value > hi:
            self.error(path, f"must be ≤ {format_number(hi)} (got {value})")
            return None
        return int(value) if integer else float(value)

    def duration(self, value: Any, path: Path) -> float | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None


def close_match(word: Any, choices: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` is a likely typo of one of ``choices``, else ``''``."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f" (did you mean {match[0]!r}?)" if match else ""
