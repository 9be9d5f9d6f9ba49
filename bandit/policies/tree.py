"""The second rung: a learned decision tree, served and read as the rules tier's own YAML rules.

A tree snapshot (grown by :mod:`bandit.learners.tree`) is plain JSON in the
rules' shape: ``when`` conditions on context fields, an ordered ``items``
list per leaf, a ``default``.  It is validated against the config when
loaded (no pickles) and served by the rules machinery, so what a merchandiser
reads, diffs and pins is exactly what serves; the explanation names the
leaf's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bandit.config import Condition, ConfigChecker, Rule, SlotConfig, StoreConfig
from bandit.policies.rules import RulesPolicy

SNAPSHOT_KIND = "storefront.tree.v1"


class SnapshotError(ValueError):
    """A tree snapshot that does not fit the config (corrupt, or trained for another catalog)."""


def load_snapshot(config: StoreConfig, snapshot: Any, slot: str | None = None) -> SlotConfig:
    """Validate a snapshot against ``config`` and return the rules it serves as a slot config.

    Raises
    ------
    SnapshotError
        Naming what does not fit: wrong kind, unknown slot, item or context field.
    """
    if not isinstance(snapshot, dict) or snapshot.get("kind") != SNAPSHOT_KIND:
        raise SnapshotError(f"not a tree snapshot (kind must be {SNAPSHOT_KIND!r})")
    name = snapshot.get("slot")
    try:
        slot_config = config.slot(str(name))
    except KeyError:
        raise SnapshotError(f"snapshot slot {name!r} is not in the config") from None
    if slot is not None and name != slot:
        raise SnapshotError(f"snapshot is for slot {name!r}, not {slot!r}")
    checker = ConfigChecker(f"snapshot {snapshot.get('version', '?')}", {})
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
    def for_slot(cls, config: StoreConfig, slot: SlotConfig, snapshot: Mapping[str, Any] | None = None) -> TreePolicy:
        """The snapshot's tree, validated against the config; the exploration share comes from ``slot``.

        Raises
        ------
        SnapshotError
            Without a snapshot (a tree is learned, never configured), or one that does not fit.
        """
        loaded = load_snapshot(config, snapshot, slot.name)
        assert snapshot is not None  # load_snapshot refuses None
        return cls(replace(loaded, exploration=slot.exploration), str(snapshot.get("version", "")))

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
