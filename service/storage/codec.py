"""JSON encoding of what the service stores, fast where it is hot (every ``/v1/rank`` logs one event)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

COMPACT = (",", ":")
# Stand-ins for each decision's candidates and pmf while an event is encoded (see event_json).  JSON-escaped,
# they cannot come from a real value unless some string holds them, which event_json checks.
_MARKS = {"candidates": "\x00candidates\x00", "pmf": "\x00pmf\x00"}
_MARKS_JSON = {field: json.dumps(mark) for field, mark in _MARKS.items()}


@lru_cache(maxsize=4096)
def _items_json(items: tuple[str, ...]) -> str:
    return json.dumps(items, separators=COMPACT)


@lru_cache(maxsize=4096)
def _floats_json(values: tuple[float, ...]) -> str:
    return json.dumps(values, separators=COMPACT)


def event_json(event: Mapping[str, Any]) -> str:
    """``json.dumps(event, separators=(",", ":"))``, the same text, in half the time.

    Most of the cost of encoding a logged page is each slot's candidate list
    and full pmf (float repr above all), and they repeat: a rules slot serves
    one pmf per number of candidates and favourite position, and candidate
    lists differ only by exclusions and the items earlier slots took.  So the
    JSON of each list is cached, and spliced into the text in place of a marker.
    """
    decisions = event.get("decisions")
    if not isinstance(decisions, list) or not all(isinstance(d, dict) and d.keys() >= _MARKS.keys() for d in decisions):
        return json.dumps(event, separators=COMPACT)
    text = json.dumps({**event, "decisions": [{**d, **_MARKS} for d in decisions]}, separators=COMPACT)
    if any(text.count(mark) != len(decisions) for mark in _MARKS_JSON.values()):
        return json.dumps(event, separators=COMPACT)
    for d in decisions:
        text = text.replace(_MARKS_JSON["candidates"], _items_json(tuple(d["candidates"])), 1)
        text = text.replace(_MARKS_JSON["pmf"], _floats_json(tuple(map(float, d["pmf"]))), 1)
    return text
