"""The policies a config is measured against, over the same candidates as the config.

- :class:`OraclePolicy` knows the truth: the upper bound.
- :class:`UniformPolicy` picks uniformly among the eligible items: the floor.
- :class:`VWPeer` is the strongest off-the-shelf learner a user could pick
  instead: one ``cb_explore_adf`` learner per slot (SquareCB by default),
  learning online from joined rewards on the simulated clock.  It plugs into
  the runner through the same learner hook as the config's own learned tiers.

All three are plain :class:`bandit.policies.base.Policy` objects (or a learner that
hands them out), so :class:`bandit.page.PageFiller` applies the config's
exclusions, pins and publisher caps to them exactly as to the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandit.config import StoreConfig
from bandit.learners.vw import ExploreADF, FeatureEncoder, VWPolicy
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


def default_reward_scale(config: StoreConfig) -> float:
    """Reward units per VW cost unit: the sum of the positive event weights (at least 1)."""
    return max(1.0, sum(w for w in config.reward.events.values() if w > 0))


class VWPeer:
    """One ``cb_explore_adf`` learner per slot, driven through the runner's learner hook.

    ``observe`` learns from each joined record of its slot (context,
    candidates, chosen, propensity, reward); ``policies`` hands out the same
    :class:`~bandit.learners.vw.VWPolicy` objects every time, since VW updates in place.
    """

    def __init__(self, config: StoreConfig, algorithm: str = "squarecb", seed: int = 0, reward_scale: float = 0.0):
        encoder = FeatureEncoder(config)
        scale = reward_scale or default_reward_scale(config)
        self.algorithm = algorithm
        self.learners = {
            slot.name: ExploreADF(encoder, algorithm, reward_scale=scale, seed=seed + slot.position)
            for slot in config.slots
        }
        self._policies = {name: VWPolicy(name, learner, f"vw-{algorithm}") for name, learner in self.learners.items()}

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
