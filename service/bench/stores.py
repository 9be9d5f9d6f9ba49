"""The stores ``storefront bench rank`` measures: a wider catalog, and every slot served from a learned tier.

A rank's cost grows with the catalog (every eligible item gets a probability)
and depends on the tier that serves (rules scan a few rules; a tree is rules
learned from the log; the gradient tier scores every candidate from hashed
context × item weights).  To measure a tier without first learning it from
traffic, the bench saves a synthetic snapshot of realistic size for each slot
as that slot's promoted incumbent (frozen, so the learner leaves it alone),
exactly where the ladder would save a learned one; the workers pick it up as
they would a promotion.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bandit.config import StoreConfig
from bandit.escalation.state import SlotState
from bandit.features import FeatureHashing
from bandit.policies.gradient import encode_snapshot, hashing_of
from bandit.policies.tree import SNAPSHOT_KIND
from service.storage.protocols import LadderStore, LadderWrite

TIERS = ("rules", "tree", "gradient")


def widen_catalog(config_path: Path, items: int, out: Path) -> Path:
    """The config with its catalog grown to ``items`` items (copies of its own, new ids, publishers cycled)."""
    data = yaml.safe_load(config_path.read_text())
    catalog = data["catalog"]["items"]
    if items <= len(catalog):
        return config_path
    publishers = sorted({item["publisher"] for item in catalog})
    for k in range(items - len(catalog)):
        model = catalog[k % len(catalog)]
        catalog.append({**model, "id": f"bench-{k:04d}", "publisher": publishers[k % len(publishers)],
                        "title": f"Bench item {k}"})  # fmt: skip
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out


def tree_snapshot(config: StoreConfig, slot: str, rng: random.Random) -> dict[str, Any]:
    """A tree of a learned one's size: a leaf per pair of values of the first two category fields (capped at
    32 leaves), each with three items, and a default list."""
    categories = [f for f in config.context.fields if f.kind == "category"][:2]
    ids = list(config.catalog.ids)
    pairs = list(itertools.product(*(f.values for f in categories)))[:32]
    rules = [
        {"name": f"leaf-{k + 1}", "when": {f.name: v for f, v in zip(categories, values, strict=True)},
         "items": rng.sample(ids, min(3, len(ids)))}
        for k, values in enumerate(pairs)
    ]  # fmt: skip
    default = list(config.slot(slot).default) + [i for i in rng.sample(ids, min(3, len(ids)))]
    return {"kind": SNAPSHOT_KIND, "slot": slot, "version": f"tree-bench-{slot}", "rules": rules,
            "default": list(dict.fromkeys(default))}  # fmt: skip


def gradient_snapshot(config: StoreConfig, slot: str, rng: random.Random) -> dict[str, Any]:
    """Weights on a quarter of the context buckets × every item bucket the catalog uses (a well-trained slot's
    density), random."""
    hashing = FeatureHashing(config, hashing_of(config.slot(slot)))
    generator = np.random.default_rng(rng.randrange(2**32))
    rows = np.flatnonzero(generator.random(hashing.n_context) < 0.25)
    cols = np.unique(np.concatenate([hashing.item_index(i) for i in config.catalog.ids]))
    cols = cols[cols < hashing.n_item]
    grid_rows, grid_cols = np.repeat(rows, len(cols)), np.tile(cols, len(rows))
    return encode_snapshot(config, slot, grid_rows, grid_cols, generator.normal(0, 1.0, grid_rows.size), n=0)


def seed_tier(storage: LadderStore, config: StoreConfig, tier: str, seed: int = 1) -> None:
    """Make ``tier`` every slot's incumbent, frozen; ``rules`` puts every slot back on its rules."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
    rng = random.Random(seed)
    revs = storage.ladder_revs(config.slot_names)
    writes = []
    for slot in config.slot_names:
        state = SlotState(slot, frozen=True)
        if tier != "rules":
            make = tree_snapshot if tier == "tree" else gradient_snapshot
            state.stage = "promoted"
            state.incumbent = {"tier": tier, "snapshot": make(config, slot, rng)}
            state.previous = {"tier": "rules", "snapshot": None}
        writes.append(LadderWrite(slot, state.to_json(), revs[slot]))
    storage.save_ladders(writes)
