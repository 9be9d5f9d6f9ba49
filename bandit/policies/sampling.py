"""Reproducible sampling: the draw for a slot is a pure function of the event id.

Seeding per event (instead of one process-wide generator) makes a decision
replayable from its log line alone, and makes a simulator run independent of
how requests interleave across workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

_SCALE = 1.0 / 2**64


def uniform_for(event_id: str, slot: str) -> float:
    """A number in [0, 1) determined by ``(event_id, slot)``.

    >>> uniform_for("e1", "hero") == uniform_for("e1", "hero")
    True
    >>> 0.0 <= uniform_for("e1", "hero") < 1.0
    True
    """
    digest = blake2b(f"{event_id}\x00{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def sample_index(pmf: Sequence[float], u: float) -> int:
    """Inverse-CDF draw: the first index whose cumulative probability exceeds ``u``.

    Never returns an index of zero probability, even when rounding leaves the
    total a hair below ``u``.

    >>> sample_index([0.2, 0.0, 0.8], 0.1), sample_index([0.2, 0.0, 0.8], 0.2), sample_index([0.5, 0.5], 0.9999999)
    (0, 2, 1)
    """
    total = 0.0
    last = -1
    for i, p in enumerate(pmf):
        if p > 0.0:
            total += p
            last = i
            if u < total:
                return i
    if last < 0:
        raise ValueError("probability vector has no positive entry")
    return last
