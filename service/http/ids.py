"""Event ids: opaque to clients, but they carry the time they were issued and a signature.

An id is 11 hex digits of milliseconds since the epoch, 16 hex digits of
randomness and 16 hex digits of signature: the first 64 bits of
HMAC-SHA256(secret, store name + the first 27 digits).  The time lets the
service tell a late reward from an unknown event after the event itself has
been joined and deleted; the signature lets it refuse a forged or altered id,
or one of another store (another name, or another secret), without a Redis
round trip.  Clients must keep treating ids as opaque strings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading

_ID_RE = re.compile(r"^[0-9a-f]{27}$")
_SIGNED_RE = re.compile(r"^[0-9a-f]{43}$")
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


class IdSigner:
    """Issues this store's signed event ids and checks them.

    >>> signer = IdSigner(b"k" * 32, "vr-store")
    >>> event_id = signer.issue(1700000000.5)
    >>> signer.issued(event_id)
    1700000000.5
    >>> signer.issued(event_id[:-1] + ("0" if event_id[-1] != "0" else "1")) is None
    True
    >>> IdSigner(b"k" * 32, "another-store").issued(event_id) is None
    True
    """

    def __init__(self, secret: bytes, store: str):
        if len(secret) < 16:
            raise ValueError("the event id secret must be at least 16 bytes")
        self._key = hmac.new(secret, store.encode(), hashlib.sha256).digest()  # per store: another store's ids fail

    def _tag(self, base: str) -> str:
        return hmac.new(self._key, base.encode(), hashlib.sha256).hexdigest()[:16]

    def issue(self, now: float) -> str:
        base = new_event_id(now)
        return base + self._tag(base)

    def issued(self, event_id: str) -> float | None:
        """When a signed id of this store was issued; None for anything else (forged, altered, another store's)."""
        if not _SIGNED_RE.match(event_id):
            return None
        base = event_id[:27]
        if not hmac.compare_digest(self._tag(base), event_id[27:]):
            return None
        return int(base[:11], 16) / 1000.0
