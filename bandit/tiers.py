"""The tier registry: every rung of the ladder by name, in ladder order.

One table read by config validation (which tiers a slot may start on), the
escalation machine (which policy an arm spec builds), the OpenAPI document
(the ``tier`` enum) and the policy contract test (every tier is checked).

Adding a tier is one module under ``bandit/policies/`` with a
:class:`~bandit.policies.base.TierPolicy` subclass whose ``tier`` is the new name
and whose :meth:`~bandit.policies.base.TierPolicy.for_slot` builds it, plus one
:func:`register` call at the bottom of this file.  The policy's module is
imported the first time a tier is built, so this module imports nothing of
the library and anything may import it.

>>> names()
('rules', 'tree', 'gradient')
>>> from_config()
('rules', 'gradient')
>>> get("tree").policy_class().tier
'tree'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bandit.config import StoreConfig
    from bandit.policies.base import TierPolicy

PIN = "pin"
"""The ``tier`` logged for an item placed by ``constraints.pins``: served, but chosen by no policy."""


@dataclass(frozen=True)
class Tier:
    """One rung of the ladder.

    Attributes
    ----------
    name
        What configs, ladder states and logged decisions call it.
    rung
        Place on the ladder, 0 first.
    policy
        ``"module:Class"`` of its :class:`~bandit.policies.base.TierPolicy`.
    from_config
        A slot may start on it from the YAML alone; the others are learned (they need a snapshot) and reached by
        escalation.
    """

    name: str
    rung: int
    policy: str
    from_config: bool

    def policy_class(self) -> type[TierPolicy]:
        module, _, name = self.policy.partition(":")
        cls: type[TierPolicy] = getattr(importlib.import_module(module), name)
        return cls

    def build(self, config: StoreConfig, slot: str, snapshot: Mapping[str, Any] | None = None) -> TierPolicy:
        """The slot's policy of this tier, from the config alone or from a learned ``snapshot``."""
        return self.policy_class().for_slot(config, config.slot(slot), snapshot)


_REGISTRY: dict[str, Tier] = {}


def register(tier: Tier) -> Tier:
    """Add a tier (its name and rung must be new)."""
    if tier.name in _REGISTRY or tier.name == PIN:
        raise ValueError(f"tier {tier.name!r} is already registered")
    if any(t.rung == tier.rung for t in _REGISTRY.values()):
        raise ValueError(f"rung {tier.rung} is already taken")
    _REGISTRY[tier.name] = tier
    return tier


def get(name: str) -> Tier:
    """The tier called ``name``.

    Raises
    ------
    ValueError
        Naming the registered tiers.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}; registered: {', '.join(names())}") from None


def all_tiers() -> tuple[Tier, ...]:
    """Every tier, in ladder order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda t: t.rung))


def names() -> tuple[str, ...]:
    """Every tier's name, in ladder order."""
    return tuple(t.name for t in all_tiers())


def from_config() -> tuple[str, ...]:
    """The tiers a slot may start on from its YAML."""
    return tuple(t.name for t in all_tiers() if t.from_config)


def served() -> tuple[str, ...]:
    """Every value a logged decision's ``tier`` can take: the tiers, and ``pin``."""
    return (*names(), PIN)


register(Tier("rules", 0, "bandit.policies.rules:RulesPolicy", from_config=True))  # ordered YAML rules
register(Tier("tree", 1, "bandit.policies.tree:TreePolicy", from_config=False))  # a learned tree, served as rules
# Softmax over hashed crosses, learned online; a slot may start on it: its learner imitates the rules first.
register(Tier("gradient", 2, "bandit.policies.gradient:GradientPolicy", from_config=True))
