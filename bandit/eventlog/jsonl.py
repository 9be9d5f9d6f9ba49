"""Reading joined logs (``storefront.joined.v1`` JSONL, see ``docs/events.md``) for evaluation and training.

A log is refused, with every offending line numbered, when a line is not a
JSON object, lacks a field off-policy evaluation needs, or carries an unusable
propensity (missing, ≤ 0, > 1, or disagreeing with its own probability
vector).  A silently skipped line would bias every estimate computed from the
rest, so nothing is skipped.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

REQUIRED = ("slot", "context", "candidates", "chosen", "propensity", "reward")
_MAX_LISTED = 50


class LogError(ValueError):
    """A log was refused; ``problems`` holds ``(line, field, message)`` for each problem found."""

    def __init__(self, source: str, problems: list[tuple[int, str, str]], total: int | None = None):
        self.source = source
        self.problems = problems
        total = total if total is not None else len(problems)
        lines = [f"{source}:{line}: {field}: {message}" for line, field, message in problems[:_MAX_LISTED]]
        if total > _MAX_LISTED:
            lines.append(f"... and {total - _MAX_LISTED} more problems")
        super().__init__("\n".join(lines))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _probabilities_sum(values: Any) -> float | None:
    """The exact sum of a list of finite numbers ≥ 0 (not bools), or None when it is not one — checked in bulk,
    as a month of a hero's log has 31 of them on each of a million lines."""
    if not isinstance(values, list) or not values or not {type(v) for v in values} <= {float, int}:
        return None
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):  # inf − inf
        return None
    return total if math.isfinite(total) and min(values) >= 0 else None


def check_record(record: Any) -> list[tuple[str, str]]:
    """Problems of one joined record as ``(field, message)``; empty when usable.

    >>> check_record({"slot": "hero", "context": {}, "candidates": ["a", "b"], "chosen": "a",
    ...               "propensity": 0.0, "reward": 1})
    [('propensity', 'must be > 0 and ≤ 1 (got 0.0): a decision without a usable propensity cannot be evaluated')]
    """
    if not isinstance(record, dict):
        return [("line", "must be a JSON object")]
    problems = [(name, "missing") for name in REQUIRED if name not in record]
    if problems:
        return problems
    if not isinstance(record["slot"], str):
        problems.append(("slot", "must be a string"))
    if not isinstance(record["context"], dict):
        problems.append(("context", "must be an object"))
    candidates = record["candidates"]
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, str) for c in candidates):
        problems.append(("candidates", "must be a non-empty list of item ids"))
        candidates = None
    elif record["chosen"] not in candidates:
        problems.append(("chosen", f"{record['chosen']!r} is not among the candidates"))
    propensity = record["propensity"]
    if not _finite(propensity) or not 0 < propensity <= 1:
        problems.append((
            "propensity",
            f"must be > 0 and ≤ 1 (got {propensity!r}): a decision without a usable propensity cannot be evaluated",
        ))  # fmt: skip
    if not _finite(record["reward"]):
        problems.append(("reward", f"must be a finite number (got {record['reward']!r})"))
    pmf = record.get("pmf")
    if pmf is not None and candidates is not None:
        total = _probabilities_sum(pmf)
        if not isinstance(pmf, list) or len(pmf) != len(candidates) or total is None:
            problems.append(("pmf", "must be a list of probabilities ≥ 0, one per candidate"))
        elif not math.isclose(total, 1.0, abs_tol=1e-6):
            problems.append(("pmf", f"must sum to 1 (sums to {total:.6f})"))
        elif record["chosen"] in candidates and _finite(propensity):
            logged = pmf[candidates.index(record["chosen"])]
            if not math.isclose(logged, propensity, rel_tol=1e-6, abs_tol=1e-9):
                problems.append(("propensity", f"{propensity} disagrees with pmf at the chosen item ({logged})"))
    return problems


class _Compactor:
    """Shares what records repeat: context values and the short strings of every record are interned, and
    records with the same candidates, or the same probabilities, get one list (read-only by convention).  A
    month of a hero's log repeats its candidates on every line, and a rules tier its few probability vectors.
    Measured on the example store's hero, the reader's peak memory per record: 6.7 KB with nothing shared,
    2.4 KB with the candidates shared, 1.3 KB (at 1,000,000 records) with the probabilities shared as well.
    Field names need no interning: orjson reuses its key strings."""

    def __init__(self) -> None:
        self.lists: dict[tuple[Any, ...], list[Any]] = {}
        self.strings: dict[str, str] = {}

    def text(self, value: Any) -> Any:
        return self.strings.setdefault(value, value) if isinstance(value, str) else value

    def shared(self, values: Any) -> Any:
        if not isinstance(values, list) or len(self.lists) >= 20_000:
            return values
        key = tuple(values)
        found = self.lists.get(key)
        if found is None:
            found = self.lists[key] = [self.text(v) for v in values]
        return found

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        text = self.text
        context = record.get("context")
        if isinstance(context, dict):
            record["context"] = {k: text(v) for k, v in context.items()}
        for field in ("candidates", "pmf"):
            if field in record:
                record[field] = self.shared(record[field])
        for field in ("chosen", "slot", "tier", "policy_version", "config_version", "explanation", "format"):
            if field in record:
                record[field] = text(record[field])
        return record


def parse_lines(lines: Iterable[str], source: str = "<log>") -> list[dict[str, Any]]:
    """Validate and parse JSONL lines; raise :class:`LogError` listing every bad line."""
    records: list[dict[str, Any]] = []
    problems: list[tuple[int, str, str]] = []
    total = 0
    compact = _Compactor()
    # Parsed records hold no reference cycles, so the cyclic collector has nothing to find in them; left on, it
    # walks every record read so far again and again (half of the reading time at 100,000 records).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                try:  # Python's json also reads NaN and Infinity, which check_record then names by field
                    record = json.loads(line)
                except ValueError as exc:
                    total += 1
                    if len(problems) < _MAX_LISTED:
                        problems.append((number, "line", f"not valid JSON: {exc}"))
                    continue
            found = check_record(record)
            if found:
                total += len(found)
                problems.extend((number, f, m) for f, m in found if len(problems) < _MAX_LISTED)
            else:
                records.append(compact(record))
    finally:
        if collecting:
            gc.enable()
    if problems:
        raise LogError(source, problems, total)
    return records


def read_joined(path: str | Path) -> list[dict[str, Any]]:
    """Read a joined-log JSONL file; every line must be usable (see :func:`check_record`)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_lines(handle, str(path))
    except OSError as exc:
        raise LogError(str(path), [(0, "file", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise LogError(str(path), [(0, "file", f"not UTF-8 text: {exc.reason}")]) from None


def by_slot(records: Iterable[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Group records per slot, slots in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["slot"], []).append(record)
    yield from groups.items()
