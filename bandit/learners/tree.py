"""Growing the second rung: a shallow decision tree learned from the joined log, as the rules plus exceptions.

Training (off-policy).  A reward model ``q̂(x, a)`` is fit on the joined log
(cross-fitted, :class:`bandit.learners.reward_model.CrossFitRewardModel`);
for every logged round the tree's target is each item's advantage over what
the slot's rules would show, ``q̂(x_i, a) − q̂(x_i, rules' pick)``.  A
multi-output scikit-learn ``DecisionTreeRegressor`` splits the contexts where
those advantages differ; a leaf where some items beat the rules becomes a rule
listing them, best first.  The learned policy is therefore the merchandiser's
rules plus the exceptions the data suggests — the way hand-made rules per
country grow into a tree.

Proposals are cheap and the model can be wrong, so nothing here decides
whether the tree pays: the escalation gate (:mod:`bandit.escalation.gate`)
estimates its lift with the doubly-robust estimator on fresh logged data,
which is unbiased when either the propensities or the model are right (Dudík,
Langford & Li, ICML 2011).

The snapshot is served by :class:`bandit.policies.tree.TreePolicy` in the
rules tier's own shape.  The tree only splits on context fields every request
carries (required, or with a default), because a rule's condition on a
missing field is false and a tree path would then not translate into rules
faithfully.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.config import DAYS, Condition, ContextField, StoreConfig, TreeSettings
from bandit.eventlog.events import learnable
from bandit.learners.reward_model import CrossFitRewardModel
from bandit.policies.rules import RulesPolicy
from bandit.policies.tree import SNAPSHOT_KIND

TREE_ROUNDS = 20_000  # rounds the tree is grown on; the reward model still learns from all of them
TREE_PASSES = 3  # passes of the reward model over the training window (1 pass under-fits the rarely shown items)


@dataclass(frozen=True)
class _Column:
    field: str
    kind: str  # "number" (raw value) or "onehot" (value == level)
    level: Any = None


class ContextEncoder:
    """Context fields → a numeric matrix whose splits read back as rule conditions.

    Categories, days and bools become one indicator column per value (a split
    reads ``country: JP`` or ``country: {not_in: [JP]}``); numbers, integers
    and hours stay numeric (a split reads ``hour: {lte: 21}``).
    """

    def __init__(self, config: StoreConfig, features: Sequence[str] = ()):
        fields = config.context.fields
        usable = [f for f in fields if f.required or f.default is not None]
        if features:
            by_name = {f.name: f for f in fields}
            unknown = [n for n in features if n not in by_name]
            if unknown:
                raise ValueError(f"tree features: unknown context field(s): {', '.join(unknown)}")
            optional = [n for n in features if by_name[n] not in usable]
            if optional:
                raise ValueError(
                    f"tree features: {', '.join(optional)} may be missing from a request; give them a default "
                    "or make them required to split on them"
                )
            usable = [by_name[n] for n in features]
        if not usable:
            raise ValueError("tree features: no context field is always present (required or with a default)")
        self.fields: tuple[ContextField, ...] = tuple(usable)
        self.columns: list[_Column] = []
        for spec in self.fields:
            if spec.kind == "category":
                self.columns += [_Column(spec.name, "onehot", v) for v in spec.values]
            elif spec.kind == "day_of_week":
                self.columns += [_Column(spec.name, "onehot", d) for d in DAYS]
            elif spec.kind == "bool":
                self.columns.append(_Column(spec.name, "onehot", True))
            else:
                self.columns.append(_Column(spec.name, "number"))

    def transform(self, contexts: Sequence[Mapping[str, Any]]) -> np.ndarray:
        X = np.zeros((len(contexts), len(self.columns)))
        for j, col in enumerate(self.columns):
            if col.kind == "number":
                X[:, j] = [float(c[col.field]) for c in contexts]
            else:
                X[:, j] = [1.0 if c[col.field] == col.level else 0.0 for c in contexts]
        return X


@dataclass
class Leaf:
    """A leaf of the fitted tree: its path, its rounds, and the items that beat the rules there."""

    name: str
    conditions: tuple[Condition, ...]
    n: int
    advantage: dict[str, float]
    items: tuple[str, ...] = field(default=())


def fit_tree(
    config: StoreConfig,
    slot: str,
    contexts: Sequence[Mapping[str, Any]],
    scores: np.ndarray,
    items: Sequence[str],
    settings: TreeSettings,
    meta: Mapping[str, Any] | None = None,
    chosen: Sequence[str] | None = None,
    min_support: int = 0,
    pessimism: float = 0.0,
) -> dict[str, Any]:
    """Grow the tree and return its snapshot (JSON-ready; load it with :func:`bandit.policies.tree.load_snapshot`).

    The learned policy is the slot's own rules plus **exceptions**.  The tree
    is grown on each round's score advantage over the rules' pick,
    ``s_i(a) − s_i(rules' pick at x_i)``; a leaf becomes a rule listing the
    items whose mean advantage there is positive, best first, and where no
    item beats the rules the merchandiser's rules keep deciding.  Whether the
    result really pays is not decided here: the escalation gate estimates its
    lift with doubly-robust off-policy evaluation on fresh data it never saw.

    Parameters
    ----------
    contexts
        One normalised context per row of ``scores``.
    scores
        Per-round scores over ``items``: the reward model's ``q̂`` (see
        :class:`bandit.learners.reward_model.CrossFitRewardModel`).
    chosen, min_support, pessimism
        With the logged chosen items, an item needs at least ``min_support``
        logged rounds in a leaf to be listed there, and its mean advantage
        there is reduced by ``pessimism / √(1 + rounds it was shown in the
        leaf)`` before it is compared with zero: a model's guess about an item
        the log rarely showed in that segment must be large to count.
    meta
        Extra provenance stored in the snapshot (data range, model...).
    """
    from sklearn.tree import DecisionTreeRegressor

    if len(contexts) != scores.shape[0] or scores.shape[1] != len(items):
        raise ValueError("contexts, scores and items do not line up")
    if len(contexts) < 2 * settings.min_leaf:
        raise ValueError(f"too few rounds to grow a tree: {len(contexts)} < 2 × min_leaf ({settings.min_leaf})")
    slot_config = config.slot(slot)
    rules = RulesPolicy(slot_config, config.version)
    baseline = np.array([_or_minus_one(rules.favourite(c, items)[0]) for c in contexts])
    rows = np.arange(len(contexts))
    base = np.where(baseline >= 0, scores[rows, np.maximum(baseline, 0)], 0.0)
    advantage = scores - base[:, None]
    encoder = ContextEncoder(config, settings.features)
    X = encoder.transform(contexts)
    model = DecisionTreeRegressor(max_depth=settings.max_depth, min_samples_leaf=settings.min_leaf, random_state=0).fit(
        X, advantage
    )
    node_of = model.apply(X)
    index = {item: k for k, item in enumerate(items)}
    support = None
    if chosen is not None:
        support = np.array([index.get(item, -1) for item in chosen])
    leaves = _leaves(model, encoder, items, settings.top_items, advantage, node_of, support, min_support, pessimism)
    learned = [
        {"name": leaf.name, "when": conditions_to_yaml(leaf.conditions), "items": list(leaf.items), "n": leaf.n,
         "advantage": {k: round(v, 6) for k, v in leaf.advantage.items()}}
        for leaf in leaves if leaf.items and leaf.conditions
    ]  # fmt: skip
    default = list(slot_config.default)
    root = [leaf for leaf in leaves if leaf.items and not leaf.conditions]
    if root:  # a stump whose single leaf beats the rules everywhere: it becomes the default
        default = list(root[0].items) + [i for i in default if i not in root[0].items]
    snapshot: dict[str, Any] = {
        "kind": SNAPSHOT_KIND,
        "slot": slot,
        "config_version": config.version,
        "settings": {
            "max_depth": settings.max_depth, "min_leaf": settings.min_leaf, "features": list(settings.features),
            "top_items": settings.top_items, "min_support": min_support, "pessimism": round(pessimism, 6),
        },
        "n": len(contexts),
        "leaves": int(model.get_n_leaves()),
        "meta": dict(meta or {}),
        "rules": learned + [
            {"name": r.name, "when": conditions_to_yaml(r.conditions), "items": list(r.items), "origin": "config"}
            for r in slot_config.rules
        ],
        "default": default,
    }  # fmt: skip
    snapshot["version"] = "tree-" + hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:12]
    return snapshot


def _or_minus_one(index: int | None) -> int:
    return -1 if index is None else index


def _leaves(model: Any, encoder: ContextEncoder, items: Sequence[str], top: int, advantage: np.ndarray,
            node_of: np.ndarray, support: np.ndarray | None, min_support: int,
            pessimism: float = 0.0) -> list[Leaf]:  # fmt: skip
    """The fitted tree's leaves as rules; a subtree whose leaves all list the same items becomes one leaf."""
    tree = model.tree_

    def pick(in_leaf: np.ndarray) -> tuple[tuple[str, ...], dict[str, float]]:
        mean = advantage[in_leaf].mean(axis=0)
        seen = None
        if support is not None:
            picked = support[in_leaf]
            seen = np.bincount(picked[picked >= 0], minlength=len(items))
            mean = mean - pessimism / np.sqrt(1.0 + seen)
        order = [
            k for k in np.argsort(-mean, kind="stable")
            if mean[k] > 0 and (seen is None or seen[k] >= min_support)
        ][:top]  # fmt: skip
        return tuple(items[k] for k in order), {items[k]: float(mean[k]) for k in order}

    def walk(node: int, path: list[tuple[_Column, str, float]]) -> list[Leaf]:
        if tree.children_left[node] == -1:
            in_leaf = node_of == node
            chosen, scores = pick(in_leaf)
            return [Leaf("", _simplify(path, encoder), int(in_leaf.sum()), scores, chosen)]
        col = encoder.columns[tree.feature[node]]
        threshold = float(tree.threshold[node])
        below = walk(tree.children_left[node], [*path, (col, "le", threshold)])
        above = walk(tree.children_right[node], [*path, (col, "gt", threshold)])
        leaves = below + above
        if len({leaf.items for leaf in leaves}) == 1:  # the split changes nothing a shopper would see
            in_node = np.isin(node_of, [n for n in _descendant_leaves(tree, node)])
            chosen, scores = pick(in_node)
            return [Leaf("", _simplify(path, encoder), int(in_node.sum()), scores, chosen)]
        return leaves

    out = walk(0, [])
    for number, leaf in enumerate(out, start=1):
        leaf.name = f"leaf-{number}"
    return out


def _descendant_leaves(tree: Any, node: int) -> list[int]:
    if tree.children_left[node] == -1:
        return [node]
    return _descendant_leaves(tree, tree.children_left[node]) + _descendant_leaves(tree, tree.children_right[node])


def _simplify(path: list[tuple[_Column, str, float]], encoder: ContextEncoder) -> tuple[Condition, ...]:
    """Merge a root-to-leaf path into at most one condition per field, in the rules' own language."""
    specs = {f.name: f for f in encoder.fields}
    out: list[Condition] = []
    for name in dict.fromkeys(col.field for col, _, _ in path):
        spec = specs[name]
        steps = [(col, side, t) for col, side, t in path if col.field == name]
        if spec.kind in ("number", "integer", "hour"):
            lo, hi = -math.inf, math.inf
            for _, side, t in steps:
                if side == "le":
                    hi = min(hi, t)
                else:
                    lo = max(lo, t)
            whole = spec.kind in ("integer", "hour")
            if whole:  # x ≤ 21.5 ⇔ x ≤ 21 and x > 21.5 ⇔ x ≥ 22 for whole numbers
                hi_v = math.floor(hi) if hi < math.inf else None
                lo_v = math.floor(lo) + 1 if lo > -math.inf else None
                if lo_v is not None and hi_v is not None:
                    out.append(Condition(name, "between", (lo_v, hi_v)))
                elif hi_v is not None:
                    out.append(Condition(name, "lte", hi_v))
                elif lo_v is not None:
                    out.append(Condition(name, "gte", lo_v))
            elif lo > -math.inf and hi < math.inf:
                out.append(Condition(name, "gt", lo))
                out.append(Condition(name, "lte", hi))
            elif hi < math.inf:
                out.append(Condition(name, "lte", hi))
            else:
                out.append(Condition(name, "gt", lo))
            continue
        equal = [col.level for col, side, _ in steps if side == "gt"]  # indicator > 0.5: field == level
        if equal:
            out.append(Condition(name, "eq", equal[0]))
        else:
            levels = [col.level for col, _, _ in steps]
            if spec.kind == "bool":
                out.append(Condition(name, "eq", not levels[0]))
            elif len(levels) == 1:
                out.append(Condition(name, "ne", levels[0]))
            else:
                out.append(Condition(name, "not_in", frozenset(levels)))
    return tuple(out)


def conditions_to_yaml(conditions: Sequence[Condition]) -> dict[str, Any]:
    """Conditions as a rule's ``when`` mapping (two conditions on one field merge into one mapping)."""
    out: dict[str, Any] = {}
    for cond in conditions:
        form = cond.to_yaml()
        if cond.field in out and isinstance(out[cond.field], dict) and isinstance(form, dict):
            out[cond.field] = {**out[cond.field], **form}
        else:
            out[cond.field] = form
    return out


def train_tree(config: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Grow the slot's tree on ``records``: the rules plus the exceptions the reward model finds.

    The reward model (hurdle, 2-fold cross-fitted) learns from every round;
    the tree is grown on at most ``TREE_ROUNDS`` of them, evenly spread, which
    keeps a retrain to seconds without changing what a depth-4 tree can see.
    """
    settings = config.slot(slot).tree
    rounds = learnable(records)
    items = [i for i in config.catalog.ids if i not in config.constraints.exclude]
    if len(rounds) < 2 * settings.min_leaf:
        raise ValueError(f"too few rounds to grow a tree: {len(rounds)} < 2 × min_leaf ({settings.min_leaf})")
    meta: dict[str, Any] = {"rounds": len(rounds), "from_ts": rounds[0].get("ts"), "to_ts": rounds[-1].get("ts")}
    model = CrossFitRewardModel(config, rounds, folds=2, seed=seed, passes=TREE_PASSES)
    sample = np.linspace(0, len(rounds) - 1, min(len(rounds), TREE_ROUNDS)).astype(int)
    try:
        bulk = model.predict_rounds([rounds[i] for i in sample.tolist()], sample.tolist())
        scores = np.array([bulk(j, items) for j in range(len(sample))])
    finally:
        model.close()
    meta["model"] = f"{model.kind}, {model.folds}-fold cross-fitted, {TREE_PASSES} passes"
    contexts = [rounds[i]["context"] for i in sample]
    chosen = [rounds[i]["chosen"] for i in sample]
    spread = float(np.std([float(r["reward"]) for r in rounds]))
    return fit_tree(config, slot, contexts, scores, items, settings, meta, chosen=chosen,
                    pessimism=settings.pessimism * spread)  # fmt: skip
