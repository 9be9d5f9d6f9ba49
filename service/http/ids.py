"""Event ids: opaque to clients, but they carry the time they were issued.

The format is 11 hex digits of milliseconds since the epoch followed by 16
hex digits of randomness.  The time lets the service tell a late reward from
an unknown event after the event itself has been joined and deleted; a later
release signs ids, and clients must keep treating them as opaque strings.
"""

from __future__ import annotations

import os
import re
import secrets
import threading

_ID_RE = re.compile(r"^[0-9a-f]{27}$")
_POOL: list[str] = []
_POOL_LOCK = threading.Lock()
_POOL_PID = [0]  # a forked child must not reuse its parent's pool: the same ids would be issued twice


def _random_hex() -> str:
    """16 hex digits from the OS's CSPRNG, read 4 KiB at a time (one system call per 512 ids, not per id)."""
    with _POOL_LOCK:
        if _POOL_PID[0] != os.getpid():
            _POOL.clear()
            _POOL_PID[0] = os.getpid()
        if not _POOL:
            block = secrets.token_hex(4096)
            _POOL.extend(block[i : i + 16] for i in range(0, len(block), 16))
        return _POOL.pop()


def new_event_id(now: float) -> str:
    """A fresh id for an event ranked at ``now`` (seconds since the epoch).

    >>> event_time(new_event_id(1700000000.5))
    1700000000.5
    """
    return f"{int(now * 1000):011x}{_random_hex()}"


def event_time(event_id: str) -> float | None:
    """When the event was issued, or None when the id is not one of ours."""
    if not _ID_RE.match(event_id):
        return None
    return int(event_id[:11], 16) / 1000.0
