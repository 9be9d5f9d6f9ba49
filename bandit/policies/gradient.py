"""The third rung: a softmax policy over hashed context × item crosses, learned online by policy gradient.

A snapshot (written by :mod:`bandit.learners.gradient`) holds the weights of
the policy's scores ``s(x, a) = Σ W[c, t]`` over the crosses of the
context's tokens ``c`` and the item's tokens ``t`` (:mod:`bandit.features`).
The served probability vector over the eligible candidates is the softmax of
the scores mixed with a floor,

    p(a | x) = (1 − ε) · exp s(x, a) / Σ_b exp s(x, b) + ε / n,

so every candidate keeps at least ``ε / n`` (``min_exploration`` of the
slot's ``gradient`` settings) and the log stays usable for evaluating the
next challenger.  Items the snapshot never saw are scored by their features
(their publisher, genre, price band...): a new item needs no retraining to
be served, and an item the config no longer has is simply never a
candidate.

A snapshot is JSON (the weights as base64 arrays, zlib-compressed); it is
validated against the config when loaded: the store, the slot and the
feature hashing must match, and every weight must be a finite number.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandit.config import Item, SlotConfig, StoreConfig
from bandit.features import FeatureHashing, HashingSettings, has_range
from bandit.policies.base import TierPolicy

SNAPSHOT_KIND = "storefront.gradient.v1"


class GradientSnapshotError(ValueError):
    """A gradient snapshot that does not fit the config (corrupt, another store or slot, other hashing)."""


def hashing_of(slot: SlotConfig) -> HashingSettings:
    """The feature hashing a slot's gradient settings ask for."""
    g = slot.gradient
    return HashingSettings(
        context_bits=g.context_bits,
        item_bits=g.item_bits,
        pairs=g.pairs,
        own_pairs=g.own_pairs,
        number_bins=g.number_bins,
    )


def same_hashing(config: StoreConfig, slot: SlotConfig, hashing: Any) -> bool:
    """Whether a snapshot's or checkpoint's ``hashing`` (its JSON) gives the slot's tokens and buckets.

    ``number_bins`` only matters to a context number with a declared range: a store without one (the fashion
    example) keeps serving what it learned before the setting existed, whatever the setting says.
    """
    expected = hashing_of(slot).to_json()
    if hashing == expected:
        return True
    if not isinstance(hashing, Mapping) or any(
        spec.kind in ("number", "integer") and has_range(spec) for spec in config.context.fields
    ):
        return False
    return {k: v for k, v in hashing.items() if k != "number_bins"} == {
        k: v for k, v in expected.items() if k != "number_bins"
    }


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")


def _unpack(text: Any, dtype: type, count: int) -> np.ndarray:
    if not isinstance(text, str):
        raise GradientSnapshotError("snapshot weights must be base64 text")
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise GradientSnapshotError(f"snapshot weights are not zlib+base64: {exc}") from None
    array: np.ndarray = np.frombuffer(raw, dtype=dtype)
    if array.size != count:
        raise GradientSnapshotError(f"snapshot weights: {array.size} values where {count} were announced")
    return array


def encode_snapshot(
    config: StoreConfig, slot: str, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, **fields: Any
) -> dict[str, Any]:
    """A snapshot of the weights ``W[rows[i], cols[i]] = values[i]`` (bucket indices of the slot's hashing).

    ``fields`` add provenance (``n``, ``step``, ``lineage``, ``meta``...).  The
    version is a hash of the weights and the settings, so the same weights give
    the same version.
    """
    slot_config = config.slot(slot)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order].astype(np.int32), cols[order].astype(np.int32)
    values = values[order].astype(np.float32)
    snapshot: dict[str, Any] = {
        "kind": SNAPSHOT_KIND,
        "store": config.name,
        "slot": slot,
        "config_version": config.version,
        "hashing": hashing_of(slot_config).to_json(),
        "min_exploration": slot_config.gradient.min_exploration,
        "weights": {
            "encoding": "zlib+base64",
            "count": int(values.size),
            "rows": _pack(rows),
            "cols": _pack(cols),
            "values": _pack(values),
        },
        **fields,
    }
    digest = hashlib.sha256()
    digest.update(rows.tobytes())
    digest.update(cols.tobytes())
    digest.update(values.tobytes())
    digest.update(repr(sorted((k, str(v)) for k, v in snapshot["hashing"].items())).encode())
    snapshot["version"] = "gradient-" + digest.hexdigest()[:12]
    return snapshot


def decode_weights(config: StoreConfig, slot: SlotConfig, snapshot: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, values)`` of a snapshot, after checking that it fits ``config`` and ``slot``.

    Raises
    ------
    GradientSnapshotError
        Naming what does not fit.
    """
    if not isinstance(snapshot, Mapping) or snapshot.get("kind") != SNAPSHOT_KIND:
        raise GradientSnapshotError(f"not a gradient snapshot (kind must be {SNAPSHOT_KIND!r})")
    if snapshot.get("store") != config.name:
        raise GradientSnapshotError(f"snapshot is for store {snapshot.get('store')!r}, not {config.name!r}")
    if snapshot.get("slot") != slot.name:
        raise GradientSnapshotError(f"snapshot is for slot {snapshot.get('slot')!r}, not {slot.name!r}")
    if not same_hashing(config, slot, snapshot.get("hashing")):
        raise GradientSnapshotError(
            f"snapshot feature hashing {snapshot.get('hashing')} differs from the slot's {hashing_of(slot).to_json()}; "
            "it was learned for other gradient settings"
        )
    weights = snapshot.get("weights")
    if not isinstance(weights, Mapping) or weights.get("encoding") != "zlib+base64":
        raise GradientSnapshotError("snapshot weights must be {encoding: zlib+base64, count, rows, cols, values}")
    count = weights.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise GradientSnapshotError("snapshot weights: count must be a whole number ≥ 0")
    rows = _unpack(weights.get("rows"), np.int32, count)
    cols = _unpack(weights.get("cols"), np.int32, count)
    values = _unpack(weights.get("values"), np.float32, count)
    n_context, n_item = hashing_of(slot).n_context, 1 << slot.gradient.item_bits
    if count and (rows.min() < 0 or rows.max() >= n_context or cols.min() < 0 or cols.max() >= n_item):
        raise GradientSnapshotError("snapshot weights: a bucket index is outside the hashing's range")
    if not np.isfinite(values).all():
        raise GradientSnapshotError("snapshot weights: not every weight is a finite number")
    return rows.astype(np.int64), cols.astype(np.int64), values.astype(np.float64)


class GradientPolicy(TierPolicy):
    """Serve a slot from a gradient snapshot.

    The weights are held compactly: one row per context bucket the snapshot
    has, one column per item bucket the config's items use (plus a zero
    column for padding).  The explanation names the top item and its softmax
    probability.
    """

    tier = "gradient"

    def __init__(self, config: StoreConfig, slot_config: SlotConfig, snapshot: Mapping[str, Any]):
        rows, cols, values = decode_weights(config, slot_config, snapshot)
        self.config = config
        self.slot_config = slot_config
        self.slot = slot_config.name
        self.version = str(snapshot.get("version", ""))
        self.snapshot = snapshot
        self.exploration = float(slot_config.gradient.min_exploration)
        self.hashing = FeatureHashing(config, hashing_of(slot_config))
        items = config.catalog.ids
        buckets = sorted({int(b) for item in items for b in self.hashing.item_index(item) if b < self.hashing.n_item})
        column = {b: k for k, b in enumerate(buckets)}
        pad = len(buckets)
        self._item_columns = {
            item: np.array([column[int(b)] if b < self.hashing.n_item else pad for b in self.hashing.item_index(item)])
            for item in items
        }
        row_of: dict[int, int] = {}
        for r in rows.tolist():
            row_of.setdefault(r, len(row_of))
        self._row_of = row_of
        self._weights = np.zeros((len(row_of) + 1, pad + 1))  # last row: context buckets the snapshot lacks
        keep = np.fromiter((c in column for c in cols.tolist()), dtype=bool, count=len(cols))
        if keep.any():
            r = np.fromiter((row_of[x] for x in rows[keep].tolist()), dtype=np.int64)
            c = np.fromiter((column[x] for x in cols[keep].tolist()), dtype=np.int64)
            np.add.at(self._weights, (r, c), values[keep])
        self._missing_row = len(row_of)
        self._column, self._pad = column, pad
        self._extra: Mapping[str, Item] = {}  # a request's ad-hoc items (with_request)
        # Per item, its columns summed: s(x, a) = Σ over the context's rows of _item_scores[row, a].
        self._item_position = {item: k for k, item in enumerate(items)}
        incidence = np.zeros((pad + 1, len(items)))
        for k, item in enumerate(items):
            np.add.at(incidence[:, k], self._item_columns[item], 1.0)
        incidence[pad] = 0.0  # the padding bucket has no weight
        self._item_scores = self._weights @ incidence
        self._positions: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def for_slot(
        cls, config: StoreConfig, slot: SlotConfig, snapshot: Mapping[str, Any] | None = None
    ) -> GradientPolicy:
        """The snapshot's policy; the floor ``min_exploration`` comes from ``slot``.

        Raises
        ------
        GradientSnapshotError
            Without a snapshot (the learner publishes the first one, imitating the
            incumbent), or with one that does not fit.
        """
        if snapshot is None:
            raise GradientSnapshotError("a gradient policy needs a snapshot (the learner publishes the first one)")
        return cls(config, slot, snapshot)

    def scores(self, context: Mapping[str, Any], candidates: Sequence[str]) -> np.ndarray:
        """The softmax's logits ``s(x, a)`` for ``candidates``."""
        row_of, missing = self._row_of, self._missing_row
        rows = [row_of.get(b, missing) for b in self.hashing.context_index(context).tolist()]
        summed = self._item_scores[rows].sum(axis=0)
        key = tuple(candidates)
        if self._extra and not all(c in self._item_position for c in key):
            return self._scores_with_extra(rows, summed, key)
        positions = self._positions.get(key)
        if positions is None:
            if len(self._positions) >= 1024:  # candidate lists repeat (the catalog, stock subsets): a small cache
                self._positions.clear()
            positions = self._positions[key] = np.array([self._item_position[c] for c in key], dtype=np.int64)
        return summed[positions]

    def _scores_with_extra(self, rows: list[int], summed: np.ndarray, candidates: tuple[str, ...]) -> np.ndarray:
        """Logits when some candidates are a request's items: those score by the snapshot's weights of the
        feature buckets they share with the catalog's items (their own id's bucket has none)."""
        per_column = self._weights[rows].sum(axis=0)
        column, pad = self._column, self._pad
        out = np.empty(len(candidates))
        for k, item in enumerate(candidates):
            position = self._item_position.get(item)
            if position is not None:
                out[k] = summed[position]
            else:
                out[k] = per_column[[column.get(b, pad) for b in self.hashing.item_buckets(self._extra[item])]].sum()
        return out

    def with_request(self, baseline: str | None = None, items: Mapping[str, Item] | None = None) -> GradientPolicy:
        """Scoring ``items`` (a request's ad-hoc items) by their features as well."""
        if not items:
            return self
        scoped = copy.copy(self)
        scoped._extra = items
        return scoped

    def floor(self, n: int) -> float:
        return self.exploration / n if n >= 2 else 0.0

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        s = self.scores(context, candidates)
        s -= s.max()
        e = np.exp(s)
        soft = e / e.sum()
        n = len(candidates)
        probs = (1.0 - self.exploration) * soft + self.exploration / n if n > 1 else soft
        probs /= probs.sum()
        top = int(np.argmax(soft))
        return probs.tolist(), f"gradient:{candidates[top]}@{soft[top]:.2f}"

    def clone(self) -> GradientPolicy:
        return GradientPolicy(self.config, self.slot_config, self.snapshot)
