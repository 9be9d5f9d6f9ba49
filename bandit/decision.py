"""The value object every tier returns for one slot of one page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """What was served in one slot and with what probability.

    ``pmf[i]`` is the probability the serving policy gave ``candidates[i]``;
    ``propensity`` is ``pmf`` at the chosen item, always > 0.  Both are
    conditional on the items that slots earlier on the page already took.

    Attributes
    ----------
    slot, position
        Slot name and its place in page order (0 is filled first).
    item
        The chosen item id.
    propensity
        Probability of ``item`` under the serving policy.
    candidates, pmf
        The eligible candidates and the full probability vector over them.
    tier
        ``rules``, ``tree``, ``gradient`` or ``pin``.
    policy_version
        Identifies the exact policy (config version for rules, snapshot id for models).
    explanation
        Why: the rule matched (``rule:<name>``, ``default``), the tree path.
    shadow
        A challenger evaluated beside the served policy and not served:
        ``{"version", "tier", "pmf"}`` with ``pmf`` aligned with ``candidates``.
    """

    slot: str
    position: int
    item: str
    propensity: float
    candidates: tuple[str, ...]
    pmf: tuple[float, ...]
    tier: str
    policy_version: str
    explanation: str
    shadow: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "slot": self.slot,
            "position": self.position,
            "item": self.item,
            "propensity": self.propensity,
            "candidates": list(self.candidates),
            "pmf": list(self.pmf),
            "tier": self.tier,
            "policy_version": self.policy_version,
            "explanation": self.explanation,
        }
        if self.shadow is not None:
            out["shadow"] = self.shadow
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            slot=data["slot"],
            position=int(data["position"]),
            item=data["item"],
            propensity=float(data["propensity"]),
            candidates=tuple(data["candidates"]),
            pmf=tuple(float(p) for p in data["pmf"]),
            tier=data["tier"],
            policy_version=data["policy_version"],
            explanation=data["explanation"],
            shadow=data.get("shadow"),
        )
