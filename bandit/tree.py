"""The second rung: a shallow decision tree learned from the joined log, served and read as YAML rules.

Training (off-policy).  A reward model ``q̂(x, a)`` is fit on the joined log
(cross-fitted, :class:`bandit.evaluation.CrossFitRewardModel`); for every
logged round the tree's target is each item's advantage over what the slot's
rules would show, ``q̂(x_i, a) − q̂(x_i, rules' pick)``.  A multi-output
scikit-learn ``DecisionTreeRegressor`` splits the contexts where those
advantages differ; a leaf where some items beat the rules becomes a rule
listing them, best first.  The learned policy is therefore the merchandiser's
rules plus the exceptions the data suggests — the way hand-made rules per
country grow into a tree.

Proposals are cheap and the model can be wrong, so nothing here decides
whether the tree pays: the escalation gate (:mod:`bandit.ladder`) estimates
its lift with the doubly-robust estimator on fresh logged data, which is
unbiased when either the propensities or the model are right (Dudík, Langford
& Li, ICML 2011).  :func:`dr_scores` gives the per-round doubly-robust scores
``Γ_i(a) = q̂(x_i, a) + 1[a = a_i] · (r_i − q̂(x_i, a_i)) / μ(a_i|x_i)`` for
analysis and for callers who prefer to grow on them (Athey & Wager, "Policy
Learning with Observational Data", Econometrica 2021).

The fitted tree is exported as rules in the same shape the rules tier reads
(``when`` conditions on context fields, an ordered ``items`` list, a
``default``) and served from those rules, so what a merchandiser reads, diffs
and pins is exactly what serves.  A snapshot is plain JSON, validated against
the config when loaded: no pickles.

The tree only splits on context fields every request carries (required, or
with a default), because a rule's condition on a missing field is false and
a tree path would then not translate into rules faithfully.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.config import DAYS, Condition, ContextField, Rule, SlotConfig, StoreConfig, TreeSettings
from bandit.policy import register
from bandit.rules import RulesPolicy

SNAPSHOT_KIND = "storefront.tree.v1"
# Scores for q̂(x_i, a): round index, its context and the items in, one number per item out.
RewardModel = Callable[[int, Mapping[str, Any], Sequence[str]], Sequence[float]]


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


def dr_scores(
    records: Sequence[Mapping[str, Any]],
    items: Sequence[str],
    reward_model: RewardModel | None = None,
    weight_clip: float = 50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Model scores ``q̂(x_i, a)`` and doubly-robust scores ``Γ_i(a)``, both ``n × len(items)``.

    Without a reward model ``q̂ = 0`` and ``Γ`` is the plain IPS score.
    """
    index = {item: k for k, item in enumerate(items)}
    model_scores = np.zeros((len(records), len(items)))
    scores = np.zeros((len(records), len(items)))
    for i, record in enumerate(records):
        if reward_model is not None:
            model_scores[i] = reward_model(i, record["context"], items)
        scores[i] = model_scores[i]
        k = index.get(record["chosen"])
        if k is None:
            continue
        weight = min(1.0 / float(record["propensity"]), weight_clip)
        scores[i, k] += weight * (float(record["reward"]) - model_scores[i, k])
    return model_scores, scores


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
    """Grow the tree and return its snapshot (JSON-ready; load it with :func:`load_snapshot`).

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
        :class:`bandit.evaluation.CrossFitRewardModel`), or :func:`dr_scores`.
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


class SnapshotError(ValueError):
    """A tree snapshot that does not fit the config (corrupt, or trained for another catalog)."""


def load_snapshot(config: StoreConfig, snapshot: Any, slot: str | None = None) -> SlotConfig:
    """Validate a snapshot against ``config`` and return the rules it serves as a slot config.

    Raises
    ------
    SnapshotError
        Naming what does not fit: wrong kind, unknown slot, item or context field.
    """
    from bandit.config import _Checker

    if not isinstance(snapshot, dict) or snapshot.get("kind") != SNAPSHOT_KIND:
        raise SnapshotError(f"not a tree snapshot (kind must be {SNAPSHOT_KIND!r})")
    name = snapshot.get("slot")
    if slot is not None and name != slot:
        raise SnapshotError(f"snapshot is for slot {name!r}, not {slot!r}")
    try:
        slot_config = config.slot(str(name))
    except KeyError:
        raise SnapshotError(f"snapshot slot {name!r} is not in the config") from None
    checker = _Checker(f"snapshot {snapshot.get('version', '?')}", {})
    item_ids = set(config.catalog.ids)
    raw_rules = snapshot.get("rules")
    if not isinstance(raw_rules, list):
        raise SnapshotError("snapshot: rules must be a list")
    rules: list[Rule] = []
    for j, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise SnapshotError(f"snapshot: rules[{j}] must be a mapping")
        rule = checker.rule({k: raw[k] for k in ("name", "when", "items") if k in raw}, ("rules", j),
                            config.context, item_ids, j)  # fmt: skip
        if rule:
            rules.append(rule)
    default = checker.item_list(snapshot.get("default"), ("default",), item_ids)
    if checker.problems or default is None:
        raise SnapshotError("snapshot does not fit the config:\n" + "\n".join(str(p) for p in checker.problems))
    return SlotConfig(slot_config.name, slot_config.position, "tree", slot_config.exploration, tuple(rules), default)


@register
class TreePolicy(RulesPolicy):
    """Serve a slot from a learned tree snapshot; the explanation shows the leaf's path.

    Examples
    --------
    >>> from bandit.config import Condition, SlotConfig, Rule
    >>> slot = SlotConfig("hero", 0, "tree", 0.1, (Rule("leaf-1", (Condition("country", "eq", "JP"),), ("b",)),),
    ...                   ("a",))
    >>> TreePolicy(slot, "tree-abc").pmf({"country": "JP"}, ["a", "b"])
    ([0.1, 0.9], 'tree:leaf-1[country=JP]')
    """

    tier = "tree"

    def __init__(self, slot_config: SlotConfig, version: str = ""):
        super().__init__(slot_config, version)
        self._paths = {
            f"rule:{r.name}": f"tree:{r.name}[{_path_text(r.conditions)}]"
            for r in slot_config.rules
            if r.name.startswith("leaf-")
        }

    @classmethod
    def from_snapshot(cls, config: StoreConfig, snapshot: Mapping[str, Any]) -> TreePolicy:
        return cls(load_snapshot(config, snapshot), str(snapshot.get("version", "")))

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        probs, explanation = super()._pmf(context, candidates)
        return probs, self._paths.get(explanation, explanation)

    def clone(self) -> TreePolicy:
        return TreePolicy(self.slot_config, self.version)


def _path_text(conditions: Sequence[Condition]) -> str:
    parts = []
    for c in conditions:
        symbol = {"eq": "=", "ne": "≠", "lte": "≤", "lt": "<", "gte": "≥", "gt": ">"}.get(c.op)
        if symbol:
            parts.append(f"{c.field}{symbol}{c.value}")
        elif c.op in ("in", "not_in"):
            parts.append(f"{c.field} {'in' if c.op == 'in' else 'not in'} {{{','.join(sorted(map(str, c.value)))}}}")
        elif c.op == "between":
            parts.append(f"{c.value[0]}≤{c.field}≤{c.value[1]}")
        else:
            parts.append(f"{c.field} {c.op} {c.value}")
    return " & ".join(parts)


def snapshot_as_rules_yaml(snapshot: Mapping[str, Any]) -> str:
    """The snapshot as a YAML fragment in the rules tier's shape, ready to paste under ``slots:``."""
    import yaml

    rules = [{"name": r["name"], "when": r["when"], "items": r["items"]} for r in snapshot["rules"]]
    head = (
        f"# Learned tree {snapshot.get('version')} for slot {snapshot['slot']!r}: {snapshot.get('n')} logged rounds,\n"
        f"# max depth {snapshot['settings']['max_depth']}, min leaf {snapshot['settings']['min_leaf']}. "
        "Each rule is one leaf; items are the leaf's best, in order.\n"
    )
    body = yaml.safe_dump(
        [{"name": snapshot["slot"], "tier": "rules", "rules": rules, "default": snapshot["default"]}],
        sort_keys=False, default_flow_style=None, allow_unicode=True, width=110,
    )  # fmt: skip
    return head + body
