"""What the learner keeps of each joined record: the fields training and gates read, compactly."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping
from typing import Any

_KEPT = ("event_id", "ts", "slot", "position", "chosen", "propensity", "reward", "tier", "policy_version", "arms")


class RecordSlimmer:
    """Keeps only what training and gates read of a joined record, sharing what repeats.

    A joined record decoded from JSON costs about 6 KB (its candidates, pmf
    and context are fresh objects, and it carries explanations and outcomes);
    the slim copy shares interned strings and candidate tuples and stores the
    pmf as packed doubles: about 1.1 KB for a 31-item slot.  A learner holds
    ``train_window`` records, and up to ``max_events`` more in shadow.
    """

    def __init__(self, max_shapes: int = 1024):
        self.max_shapes = max_shapes
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __call__(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out = {key: record[key] for key in _KEPT if key in record}
        for key in ("event_id", "slot", "chosen", "tier", "policy_version"):
            if isinstance(out.get(key), str):
                out[key] = sys.intern(out[key])
        candidates = tuple(record["candidates"])
        shared = self._shapes.get(candidates)
        if shared is None:  # a new candidate list: intern its ids once
            if len(self._shapes) >= self.max_shapes:
                self._shapes.clear()
            shared = self._shapes[candidates] = tuple(sys.intern(c) for c in candidates)
        out["candidates"] = shared
        out["context"] = {sys.intern(k): sys.intern(v) if isinstance(v, str) else v
                          for k, v in record["context"].items()}  # fmt: skip
        arms = record.get("arms")
        if arms is not None:
            out["arms"] = {sys.intern(k): float(v) for k, v in arms.items()}
        pmf = record.get("pmf")
        out["pmf"] = None if pmf is None else array("d", pmf)
        return out
