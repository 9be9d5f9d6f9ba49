"""Logged decisions, posted rewards, and the joined events learners read.

The service logs one *event* per ``/v1/rank`` call (the context and one
decision per slot).  Rewards are posted per ``(event_id, slot)``.  When the
event's reward window closes, the learner turns it into one *joined record*
per slot: everything off-policy evaluation needs plus the reward.  The JSONL
format of joined records is documented in ``docs/events.md``; this module is
its single definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandit.config import RewardConfig, is_finite_number
from bandit.policies.base import Decision

JOINED_FORMAT = "storefront.joined.v1"
EXPLICIT = "reward"
#: Posted by activation (a deferred page was shown), not by a shopper: no reward, but the page may be learned from.
ACTIVATE = "activate"
PURCHASE = "purchase"


def logged_event(
    event_id: str, ts: float, window: float, config_version: str, context: Mapping[str, Any],
    decisions: Sequence[Decision],
) -> dict[str, Any]:  # fmt: skip
    """The logged event of one ranked page: the context and each slot's decision with its full pmf.

    ``window_close`` is ``ts + window``, when the rewards stop being accepted
    and the learner may join it.  The service may add ``deferred`` (see
    :func:`joined_records`) and ``actions``: the request's own items (not in
    the catalog) by id, with their ``publisher`` and ``features``.  The service stores this, the simulator's
    learner hook reads it, and :func:`joined_records` turns it into the log.
    """
    return {
        "event_id": event_id,
        "ts": ts,
        "window_close": ts + window,
        "config_version": config_version,
        "context": context,
        "decisions": [d.to_dict() for d in decisions],
    }


def reward_value(config: RewardConfig, posted: Mapping[str, Any]) -> float:
    """The reward of one slot decision from what was posted for it.

    ``posted`` maps an event type to its first payload (``{"revenue": 30.0}``
    for a purchase, ``{}`` otherwise) and the reserved key ``"reward"`` to the
    last explicit value.  Rule: the sum of the weights of the distinct event
    types, plus ``revenue_weight`` × the first purchase's revenue, plus the
    explicit value; ``config.default`` when nothing was posted.

    >>> from types import MappingProxyType as M
    >>> cfg = RewardConfig(60.0, 0.0, M({"click": 1.0, "purchase": 10.0}), 0.1)
    >>> reward_value(cfg, {}), reward_value(cfg, {"click": {}})
    (0.0, 1.0)
    >>> reward_value(cfg, {"click": {}, "purchase": {"revenue": 30}})
    14.0
    >>> reward_value(cfg, {"reward": 2.5})
    2.5
    """
    if not posted:
        return config.default
    total = 0.0
    for event, payload in posted.items():
        if event == EXPLICIT:
            total += float(payload)
            continue
        total += config.events.get(event, 0.0)
        # Only a purchase earns revenue; a stray revenue on another event type must not count.
        revenue = payload.get("revenue") if event == PURCHASE and isinstance(payload, Mapping) else None
        if revenue is not None:
            total += config.revenue_weight * float(revenue)
    return total


def joined_records(
    event: Mapping[str, Any], rewards: Mapping[str, Mapping[str, Any]], config: RewardConfig, joined_at: float
) -> list[dict[str, Any]]:
    """One joined record per decision of a logged event.

    Parameters
    ----------
    event
        The logged event: ``event_id``, ``ts``, ``config_version``, ``context``
        and ``decisions`` (each a :meth:`bandit.policies.base.Decision.to_dict`); see :func:`logged_event`.
    rewards
        Per slot, what was posted inside the window (see :func:`reward_value`).
    config
        The reward config in force when the event was logged.
    joined_at
        When the join happened (seconds since the epoch).
    """
    out = []
    deferred = bool(event.get("deferred"))
    actions = event.get("actions") or {}
    for decision in event["decisions"]:
        posted = rewards.get(decision["slot"], {})
        activated = ACTIVATE in posted
        if activated:  # not a shopper event: the page was shown (see logged_event's deferred pages)
            posted = {kind: payload for kind, payload in posted.items() if kind != ACTIVATE}
        revenue = posted.get("purchase", {}).get("revenue") if isinstance(posted.get("purchase"), Mapping) else None
        out.append(
            {
                "format": JOINED_FORMAT,
                "event_id": event["event_id"],
                "ts": event["ts"],
                "joined_at": joined_at,
                "slot": decision["slot"],
                "position": decision["position"],
                "context": event["context"],
                "candidates": decision["candidates"],
                "pmf": decision["pmf"],
                "chosen": decision["item"],
                "propensity": decision["propensity"],
                "tier": decision["tier"],
                "policy_version": decision["policy_version"],
                "config_version": event["config_version"],
                "explanation": decision["explanation"],
                "outcomes": sorted(k for k in posted if k != EXPLICIT),
                "revenue": revenue,
                "explicit_reward": posted.get(EXPLICIT),
                "reward": reward_value(config, posted),
                "defaulted": not posted,
            }
        )
        if decision.get("shadow") is not None:  # the challenger's pmf, logged beside the served one
            out[-1]["shadow"] = decision["shadow"]
        if decision.get("arms") is not None:  # each serving arm's probability of the item: the guardrail's weights
            out[-1]["arms"] = decision["arms"]
        if deferred:  # ranked with deferred activation: learned from only if it was activated
            out[-1]["active"] = activated
        if actions:  # the request's own items among the candidates: what they were, for whoever reads the log
            own = {item: actions[item] for item in decision["candidates"] if item in actions}
            if own:
                out[-1]["actions"] = own
    return out


def check_reward_number(value: Any) -> float:
    """A posted number (reward or revenue) as a float, or ``ValueError``."""
    if not is_finite_number(value):
        raise ValueError("must be a finite number")
    return float(value)


def unlearnable_reason(record: Mapping[str, Any]) -> str | None:
    """Why no learner or estimator may use a joined record, or None when they may.

    ``pinned``: a pin had nothing to choose (nor has a record without candidates); ``inactive``: a deferred
    decision never activated may never have been shown; ``adhoc``: a request's own items (``actions``) were
    among the candidates, outside every learner's item space (the catalog).
    """
    if record.get("tier") == "pin" or not record.get("candidates"):
        return "pinned"
    if record.get("active", True) is False:
        return "inactive"
    if record.get("actions"):
        return "adhoc"
    return None


def is_learnable(record: Mapping[str, Any]) -> bool:
    """Whether a learner or estimator may use a joined record (:func:`unlearnable_reason` has none)."""
    return unlearnable_reason(record) is None


def learnable(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records a learner or estimator can use (:func:`is_learnable`)."""
    return [r for r in records if is_learnable(r)]
