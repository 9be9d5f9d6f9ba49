"""JSON encoding of what the service stores, fast where it is hot (every ``/v1/rank`` logs one event)."""

from __future__ import annotations

import json
import zlib
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


class EventPacker:
    """Events as they are kept in Redis until joined: their JSON, deflated against a shared dictionary.

    A page's JSON (:func:`event_json`) is mostly what every other page of the
    store also says: the field names, the candidate lists, the probabilities
    of the rules.  So a recent page's JSON is the best dictionary for the next
    ones: zlib's preset dictionary takes the example store's page from ~3.9 KB
    to ~0.3 KB in ~35 µs (in the worker's writer thread), where plain zlib
    leaves ~0.7 KB.  The dictionary is saved in Redis under its hash
    (``zdict:<id>``) by the same script call as the first pages packed against
    it (:attr:`unsaved`), so it is stored and persisted before them, and read
    back (``load``) by whoever decodes; a new one is taken when pages stop
    compressing well (a catalog change), at most once per 1,000 pages.
    Blobs are ``Z`` + the 8-character dictionary id + a raw deflate stream.
    """

    REFRESH_AFTER = 1000  # pages packed before a poorly compressing one may replace the dictionary
    POOR = 0.25  # compressed/raw above which a page compresses poorly

    def __init__(self, load: Any):
        self._load = load
        self._dict: tuple[bytes, bytes] | None = None  # (id, dictionary)
        self._known: dict[bytes, bytes] = {}
        self._since = 0
        self._sent_at = 0.0
        self.unsaved: dict[bytes, bytes] = {}  # dictionaries storage has not confirmed yet: sent with the next write

    RESEND_EVERY = 60.0  # seconds: a Redis restarted without its data gets the dictionary back soon

    def saved(self) -> None:
        """The last write (which carried :attr:`unsaved`) succeeded."""
        self.unsaved = {}

    def due_resend(self, now: float) -> None:
        """Send the current dictionary again if it was last sent over :attr:`RESEND_EVERY` ago."""
        if self._dict is not None and now - self._sent_at >= self.RESEND_EVERY:
            self.unsaved[self._dict[0]] = self._dict[1]
            self._sent_at = now

    def forget_saved(self) -> None:
        """Storage may have lost data (a failed write, a restart): send the current dictionary again."""
        if self._dict is not None:
            self.unsaved[self._dict[0]] = self._dict[1]

    def pack(self, event: Mapping[str, Any]) -> bytes:
        raw = event_json(event).encode("utf-8")
        if self._dict is None:
            self._use(raw)
        assert self._dict is not None
        out = self._deflate(raw, *self._dict)
        self._since += 1
        if len(out) > self.POOR * len(raw) and self._since >= self.REFRESH_AFTER:
            self._use(raw)
            out = self._deflate(raw, *self._dict)
        return out

    def _use(self, raw: bytes) -> None:
        import hashlib

        key = hashlib.sha1(raw).hexdigest()[:8].encode()
        self.unsaved[key] = raw
        self._dict, self._since = (key, raw), 0
        self._known[key] = raw

    @staticmethod
    def _deflate(raw: bytes, key: bytes, zdict: bytes) -> bytes:
        c = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
        return b"Z" + key + c.compress(raw) + c.flush()

    def unpack(self, data: bytes) -> Any:
        """An event read back: dictionary-deflated, zlib, or the plain JSON of older releases."""
        if data[:1] == b"{":
            return json.loads(data)
        if data[:1] != b"Z":
            return json.loads(zlib.decompress(data))
        key = data[1:9]
        zdict = self._known.get(key)
        if zdict is None:
            zdict = self._load(key)
            if zdict is None:
                raise ValueError(f"event packed with dictionary {key.decode()}, which is not in storage")
            self._known[key] = zdict
        d = zlib.decompressobj(-15, zdict)
        return json.loads(d.decompress(data[9:]) + d.flush())
