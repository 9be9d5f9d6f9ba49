"""The policies a config is measured against, over the same candidates as the config.

- :class:`OraclePolicy` knows the truth: the upper bound.
- :class:`UniformPolicy` picks uniformly among the eligible items: the floor.
- :class:`VWPeer` is the strongest off-the-shelf learner a user could pick
  instead: one ``cb_explore_adf`` learner per slot (SquareCB by default),
  learning online from joined rewards on the simulated clock.  It plugs into
  the runner through the same learner hook as the config's own learned tiers.
  Its VW settings default to the tuned table ``simulator/peers.json``
  (:func:`tuned_settings`, written by ``storefront bench vw-tune`` on a seed no
  comparison uses); rewards become VW costs ``−reward / width`` of the config's
  reward interval (:func:`reward_bounds`), declared to VW as its cost range.

All three are plain :class:`bandit.policies.base.Policy` objects (or a learner that
hands them out), so :class:`bandit.page.PageFiller` applies the config's
exclusions, pins and publisher caps to them exactly as to the config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config import StoreConfig
from bandit.learners.vw import ALGORITHMS, ExploreADF, FeatureEncoder, VWPolicy, algorithm_settings, describe_settings
from bandit.policies.base import Policy
from bandit.policies.uniform import UniformPolicy as UniformPolicy  # the uniform baseline lives in the library


class TruthView:
    """The truth of the page being filled: ``expected[item, slot]``, set by the runner before each page."""

    def __init__(self) -> None:
        self.expected: np.ndarray = np.zeros((0, 0))


class OraclePolicy(Policy):
    """Puts all probability on the eligible item with the highest expected credited reward.

    Greedy per slot: slots are filled in page order, and each takes the best
    item still eligible (after the earlier slots, exclusions, pins and
    publisher caps).  That is optimal for each slot given the earlier ones, not
    necessarily for the whole page, which is why a rows-only comparison can
    exceed 100 % of the oracle; page totals are what the tests compare.
    Ties go to the candidate listed first.
    """

    tier = "oracle"

    def __init__(self, slot: str, slot_index: int, item_index: Mapping[str, int], view: TruthView):
        self.slot = slot
        self.version = "truth"
        self._s = slot_index
        self._item_index = item_index
        self._view = view

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        column = self._view.expected[:, self._s]
        index = self._item_index
        values = [column[index[c]] for c in candidates]
        best = max(range(len(candidates)), key=values.__getitem__)
        probs = [0.0] * len(candidates)
        probs[best] = 1.0
        return probs, "oracle:best-expected"

    def clone(self) -> OraclePolicy:
        return OraclePolicy(self.slot, self._s, self._item_index, self._view)


PEERS_FILE = Path(__file__).with_name("peers.json")
# Item features scenarios take revenue from (``revenue: {feature: price}``); their declared ``max`` bounds a purchase.
REVENUE_FEATURES = ("price", "revenue")


def default_reward_scale(config: StoreConfig) -> float:
    """Reward units per VW cost unit: the sum of the positive event weights (at least 1)."""
    return max(1.0, sum(w for w in config.reward.events.values() if w > 0))


def reward_bounds(config: StoreConfig) -> tuple[float, float]:
    """The rewards one decision can earn under ``config``: ``(lowest, highest)``.

    Lowest: the default reward or the sum of the negative event weights,
    whichever is lower (at most 0).  Highest: the sum of the positive weights,
    plus ``revenue_weight`` × the declared ``max`` of the catalog's ``price`` (or
    ``revenue``) feature when there is one.  The VW peer's costs are the rewards
    over this interval's width, negated (:func:`bandit.learners.vw.reward_to_cost`);
    a reward outside it is clipped (and counted).

    >>> from bandit.config import parse_config
    >>> reward_bounds(parse_config('''
    ... catalog:
    ...   features: {price: {type: number, min: 0, max: 100}}
    ...   items: [{id: a, publisher: p, features: {price: 30}}]
    ... context: {country: {type: category, values: [US]}}
    ... slots: [{name: hero, default: a}]
    ... reward: {window: 30m, events: {click: 1, add_to_cart: 3, purchase: 10}, revenue_weight: 0.1}
    ... '''))  # 1 + 3 + 10, plus 0.1 × the price's max 100
    (0.0, 24.0)
    """
    reward = config.reward
    low = min(0.0, reward.default, sum(w for w in reward.events.values() if w < 0))
    high = sum(w for w in reward.events.values() if w > 0)
    if reward.revenue_weight > 0:
        bounds = [
            float(spec.max)
            for spec in config.catalog.features
            if spec.name in REVENUE_FEATURES and spec.kind == "number" and spec.max is not None
        ]
        high += reward.revenue_weight * max(bounds, default=0.0)
    high = max(high, reward.default)
    return low, max(high, low + 1.0)


@cache
def _peers_table(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("peers"), dict):
        raise ValueError(f"{path}: expected an object with a 'peers' object")
    return data


def tuned_settings(algorithm: str, path: Path | None = None) -> dict[str, Any]:
    """The tuned VW settings of ``algorithm`` from ``simulator/peers.json`` (``{}``: VW's defaults, untuned).

    >>> tuned_settings("squarecb") == tuned_table()["peers"]["squarecb"]["settings"]
    True
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown VW algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}")
    entry = _peers_table(path or PEERS_FILE)["peers"].get(algorithm)
    settings = dict(entry["settings"]) if entry else {}
    algorithm_settings(algorithm, settings)  # refuses a setting the algorithm does not take
    return settings


def tuned_table(path: Path | None = None) -> dict[str, Any]:
    """The whole tuned table (``peers.json``): how it was produced, and each algorithm's settings and score."""
    return _peers_table(path or PEERS_FILE)


class VWPeer:
    """One ``cb_explore_adf`` learner per slot, driven through the runner's learner hook.

    ``observe`` learns from each joined record of its slot (context,
    candidates, chosen, propensity, reward); ``policies`` hands out the same
    :class:`~bandit.learners.vw.VWPolicy` objects every time, since VW updates in place.

    ``settings`` are VW options on top of the algorithm's defaults
    (:func:`bandit.learners.vw.algorithm_settings`); ``None`` (default) takes the
    tuned ones (:func:`tuned_settings`), ``{}`` VW's untuned defaults.  ``arguments``
    is the VW command line they make and :meth:`describe` says both.
    ``reward_scale`` (when > 0) overrides the width of the reward interval
    :func:`reward_bounds` maps onto VW's costs.
    """

    def __init__(
        self,
        config: StoreConfig,
        algorithm: str = "squarecb",
        seed: int = 0,
        reward_scale: float = 0.0,
        settings: Mapping[str, Any] | None = None,
    ):
        encoder = FeatureEncoder(config)
        low, high = reward_bounds(config)
        scale = reward_scale or (high - low)
        self.algorithm = algorithm
        self.settings = dict(tuned_settings(algorithm) if settings is None else settings)
        self.tuned = settings is None
        self.learners = {
            slot.name: ExploreADF(
                encoder,
                algorithm,
                reward_scale=scale,
                seed=seed + slot.position,
                settings=self.settings,
                reward_min=low,
            )
            for slot in config.slots
        }
        self.arguments = next(iter(self.learners.values())).arguments if self.learners else ""
        self._policies = {name: VWPolicy(name, learner, f"vw-{algorithm}") for name, learner in self.learners.items()}

    def describe(self) -> str:
        """``vw-squarecb (tuned: gamma_scale=100): --cb_explore_adf --squarecb ...``: the settings a run used."""
        origin = "tuned" if self.tuned else "given"
        return f"vw-{self.algorithm} ({origin}: {describe_settings(self.settings)}): {self.arguments}"

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> None:
        for record in records:
            learner = self.learners.get(record["slot"])
            if learner is None or record["tier"] != VWPolicy.tier:
                continue  # pins are not the learner's choice
            candidates = record["candidates"]
            learner.learn(
                record["context"],
                candidates,
                candidates.index(record["chosen"]),
                record["propensity"],
                record["reward"],
            )

    def policies(self, now: float) -> dict[str, Policy]:
        return dict(self._policies)

    def close(self) -> None:
        for learner in self.learners.values():
            learner.close()
