"""Hashed features of a shopper context and of catalog items, for the gradient rung's linear scores.

A score is a sum over *crosses*: every context token paired with every token
of the item, ``s(x, a) = Σ_{c ∈ tokens(x)} Σ_{t ∈ tokens(a)} W[h_c(c), h_t(t)]``.
Context tokens are ``field=value`` for each field the context carries
(a number in one of ``number_bins`` equal-width bins of its declared
range; an item's numbers in one of 5), the pairs of those (so a condition
on two fields, "a Quest late at night", has a weight of its own),
and a constant token whose crosses are the items' own weights.  Item tokens
are the item's id, its publisher and each of its features.  Both sides are
hashed (``blake2b``, 8 bytes) into ``2^context_bits`` and ``2^item_bits``
buckets, so a new item, a new publisher or a context value nobody has seen
needs no change of schema: it lands in buckets of its own, or shares them.

With ``own_pairs`` the pairs of the fields other than the hour and the day
also get rows of their own, after the single tokens' (``n_context`` doubles):
a pair's row is crossed with the items' ``id`` buckets only, so each item
has a weight per segment of two fields without adding a cross to every
shared weight of the item's publisher and features.

Scoring every candidate of a context is two gathers and a sum: the rows of
``W`` for the context's tokens are added into one vector over item buckets,
and each item's score is the sum of that vector at its tokens.

>>> from bandit.config import parse_config
>>> cfg = parse_config('''
... catalog:
...   features: {genre: {type: category, values: [rhythm, sim]}}
...   items: [{id: a, publisher: p, features: {genre: rhythm}}, {id: b, publisher: q, features: {genre: sim}}]
... context: {country: {type: category, values: [JP, US]}, age: {type: integer, min: 13, max: 99}}
... slots: [{name: hero, default: a}]
... reward: {window: 30m}
... ''')
>>> hashing = FeatureHashing(cfg, HashingSettings(context_bits=10, item_bits=8))
>>> hashing.context_tokens({"country": "JP", "age": 40})
['*', 'country=JP', 'age#1', 'country=JP|age#1']
>>> hashing.item_tokens(cfg.catalog.item("a"))
['id=a', 'publisher=p', 'genre=rhythm']
>>> hashing.context_index({"country": "JP"}).shape, hashing.items_index(["a", "b"]).shape
((2,), (2, 3))
>>> FeatureHashing(cfg, HashingSettings(context_bits=10, item_bits=8, pairs=False, number_bins=16)).context_tokens(
...     {"country": "JP", "age": 40})
['*', 'country=JP', 'age#5']
>>> own = FeatureHashing(cfg, HashingSettings(context_bits=10, item_bits=8, pairs=False, own_pairs=True))
>>> own.own_pair_tokens({"country": "JP", "age": 40}), own.context_index({"country": "JP", "age": 40}) >= 1 << 10
(['country=JP|age#1'], array([False, False, False,  True]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from itertools import combinations
from typing import Any

import numpy as np

from bandit.config import ContextField, Item, StoreConfig

HASH = "blake2b-8"
NUMBER_BINS = 5  # equal-width bins of an item feature's declared range, and of a context number's originally
BIAS = "*"


@dataclass(frozen=True)
class HashingSettings:
    """How contexts and items are hashed; a snapshot records them and is refused by a config that disagrees."""

    context_bits: int = 12
    item_bits: int = 10
    pairs: bool = True
    own_pairs: bool = False
    number_bins: int = NUMBER_BINS  # of a context number's range; the original hashing's (a slot's: hashing_of)

    @property
    def n_context(self) -> int:
        """Rows of the weight matrix: ``2^context_bits``, twice that with ``own_pairs`` (their rows follow)."""
        return (2 if self.own_pairs else 1) << self.context_bits

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hash": HASH, "context_bits": self.context_bits, "item_bits": self.item_bits,
                               "pairs": self.pairs}  # fmt: skip
        # each only when it differs from the original hashing, so older snapshots keep their hashing's JSON
        if self.own_pairs:
            out["own_pairs"] = True
        if self.number_bins != NUMBER_BINS:
            out["number_bins"] = self.number_bins
        return out


def _pairs(tokens: list[str]) -> list[str]:
    """One token per pair of ``tokens``: ``a|b``."""
    return [f"{a}|{b}" for a, b in combinations(tokens, 2)]


@lru_cache(maxsize=1 << 16)
def _bucket(token: str, bits: int) -> int:
    return int.from_bytes(blake2b(token.encode(), digest_size=8).digest(), "big") & ((1 << bits) - 1)


def _range(spec: ContextField | Any) -> tuple[float, float] | None:
    """The declared range a number field's values are binned in, or None (then: by order of magnitude)."""
    lo, hi = spec.min, spec.max
    return None if lo is None or hi is None or hi <= lo else (lo, hi)


def has_range(spec: ContextField | Any) -> bool:
    """Whether a number field's tokens depend on the count of bins (``number_bins``)."""
    return _range(spec) is not None


def _number_bin(spec: ContextField | Any, value: float, bins: int) -> str:
    """``name#k``: the value's bin among ``bins`` equal parts of the declared range (ends clamped)."""
    bounds = _range(spec)
    if bounds is None:
        # no declared range: bins by order of magnitude
        return f"{spec.name}~{int(np.sign(value) * np.floor(np.log10(abs(value) + 1.0)))}"
    lo, hi = bounds
    share = (float(value) - lo) / (hi - lo)
    return f"{spec.name}#{min(bins - 1, max(0, int(share * bins)))}"


class FeatureHashing:
    """The token and bucket maps of one config under one :class:`HashingSettings`.

    Item token buckets are computed once per item (``items_index``); context
    buckets per context.  ``n_context`` and ``n_item`` are the sizes of the
    weight matrix.  Padding in :meth:`items_index` points at bucket
    ``n_item``, one past the end, so a score vector extended by a zero can be
    gathered without masks.
    """

    def __init__(self, config: StoreConfig, settings: HashingSettings):
        self.settings = settings
        # with own_pairs, the pair tokens' rows follow the single tokens' (rows ≥ ``pair_rows``)
        self.pair_rows = 1 << settings.context_bits if settings.own_pairs else None
        self.n_context = settings.n_context
        self.n_item = 1 << settings.item_bits
        self._fields = config.context.fields
        self._item_features = config.catalog.features
        self._items: dict[str, np.ndarray] = {}
        self._catalog = config.catalog
        width = max((len(self.item_tokens(item)) for item in config.catalog.items), default=1)
        self.width = width

    # ---- tokens ------------------------------------------------------------------

    def context_tokens(self, context: Mapping[str, Any]) -> list[str]:
        return self._tokens(context)[0]

    def own_pair_tokens(self, context: Mapping[str, Any]) -> list[str]:
        """The pairs of the context's fields other than ``hour`` and ``day_of_week`` (``own_pairs``)."""
        return _pairs(self._tokens(context)[1])

    def _tokens(self, context: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        singles = []
        steady = []  # the singles of fields that are not a time of day or week
        for spec in self._fields:
            value = context.get(spec.name)
            if value is None:
                continue
            if spec.kind == "bool":
                singles.append(f"{spec.name}={'true' if value else 'false'}")
            elif spec.kind in ("number", "integer"):
                singles.append(_number_bin(spec, value, self.settings.number_bins))
            else:  # category, hour, day_of_week
                singles.append(f"{spec.name}={value}")
            if spec.kind not in ("hour", "day_of_week"):
                steady.append(singles[-1])
        tokens = [BIAS, *singles]
        if self.settings.pairs:
            tokens += _pairs(singles)
        return tokens, steady

    def item_tokens(self, item: Item) -> list[str]:
        tokens = [f"id={item.id}", f"publisher={item.publisher}"]
        for spec in self._item_features:
            value = item.features.get(spec.name)
            if value is None:
                continue
            if spec.kind == "bool":
                tokens.append(f"{spec.name}={'true' if value else 'false'}")
            elif spec.kind == "number":
                tokens.append(_number_bin(spec, value, NUMBER_BINS))
            else:
                tokens.append(f"{spec.name}={value}")
        return tokens

    # ---- buckets -----------------------------------------------------------------

    def context_index(self, context: Mapping[str, Any]) -> np.ndarray:
        """The context's row buckets (duplicates kept: two tokens in one bucket count twice, as hashing does)."""
        bits = self.settings.context_bits
        tokens, steady = self._tokens(context)
        buckets = [_bucket(t, bits) for t in tokens]
        if self.pair_rows is not None:
            buckets += [self.pair_rows + _bucket(t, bits) for t in _pairs(steady)]
        return np.array(buckets, dtype=np.int64)

    def item_index(self, item_id: str) -> np.ndarray:
        """The item's column buckets, padded to ``width`` with ``n_item``."""
        cached = self._items.get(item_id)
        if cached is None:
            buckets = self.item_buckets(self._catalog.item(item_id))
            cached = np.full(max(self.width, len(buckets)), self.n_item, dtype=np.int64)
            cached[: len(buckets)] = buckets
            self._items[item_id] = cached
        return cached

    def item_buckets(self, item: Item) -> list[int]:
        """The column buckets of any item, in the catalog or not (a request's ad-hoc item), uncached."""
        bits = self.settings.item_bits
        return [_bucket(t, bits) for t in self.item_tokens(item)]

    def items_index(self, items: Sequence[str]) -> np.ndarray:
        """``len(items) × width`` column buckets."""
        rows = [self.item_index(i) for i in items]
        width = max(len(r) for r in rows)
        if any(len(r) != width for r in rows):
            rows = [np.pad(r, (0, width - len(r)), constant_values=self.n_item) for r in rows]
        return np.stack(rows)


def scores(weights: np.ndarray, context_rows: np.ndarray, item_columns: np.ndarray) -> np.ndarray:
    """``s(x, a)`` for each row of ``item_columns``: the context's rows of ``weights`` summed, gathered per item.

    ``weights`` is ``n_context × (n_item + 1)``, its last column zero (the padding bucket).
    """
    summed = weights[context_rows].sum(axis=0)
    return summed[item_columns].sum(axis=1)
