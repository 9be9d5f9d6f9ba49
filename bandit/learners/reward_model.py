"""The reward model ``q̂(x, a)``: a critic for the learned tiers and the direct-method part of off-policy estimates.

It is cross-fitted: the rounds are split into folds and each round is scored
by a model that never saw it, which keeps the model's own overfitting out of
DR's correction term (Chernozhukov et al., "Double/debiased machine
learning", 2018).  The regressions are Vowpal Wabbit's, through
:mod:`bandit.learners.vw`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandit.config import StoreConfig


def _context_key(context: Mapping[str, Any]) -> str:
    return json.dumps(context, sort_keys=True, separators=(",", ":"))


_CHUNK = 100_000  # rounds scored at once by predict_rounds (bounds its temporary arrays)


class RoundScores:
    """``q̂`` of every catalog item for each logged round (``values[i, j]``: round ``i``, item ``items[j]``);
    calling it with a round and its candidates gives their scores in the candidates' order."""

    def __init__(self, values: np.ndarray, items: Sequence[str]):
        self.values = values
        self.position = {item: j for j, item in enumerate(items)}
        self._lists: dict[int, tuple[Sequence[str], np.ndarray]] = {}

    def __call__(self, i: int, candidates: Sequence[str]) -> np.ndarray:
        cached = self._lists.get(id(candidates))
        if cached is None or cached[0] is not candidates:  # records that share a candidate list share its index
            if len(self._lists) >= 10_000:
                self._lists.clear()
            cached = self._lists[id(candidates)] = (candidates, np.array([self.position[c] for c in candidates]))
        return self.values[i, cached[1]]


class CrossFitRewardModel:
    """``q̂(x, a)`` from K models, each trained on the rounds outside one fold.

    Two kinds:

    ``hurdle`` (default)
        ``q̂(x, a) = P(r > 0 | x, a) · v̂(a)``: a VW logistic regression for the
        chance of any reward, times the item's mean positive reward shrunk
        toward the overall mean (``shrinkage`` pseudo-rounds).  Store rewards
        are mostly zero with rare large purchases; squared loss on them barely
        beats a constant, the hurdle model does not.
    ``regression``
        ``q̂(x, a)``: VW squared-loss regression of the reward.

    Parameters
    ----------
    config
        Supplies the context schema and item features for the VW encoding.
    records
        Joined records (``context``, ``chosen``, ``reward``).
    folds
        Number of folds (2 is enough for DR); 1 trains one model on everything.
    seed
        Fold assignment and VW seed.
    passes
        Passes over the training rounds (shuffled each time).  The models learn them through VW's own parser
        (:meth:`bandit.learners.vw.RewardRegressor.learn_all`).
    """

    def __init__(
        self, config: StoreConfig, records: Sequence[Mapping[str, Any]], folds: int = 2, seed: int = 0,
        passes: int = 2, kind: str = "hurdle", shrinkage: float = 20.0,
    ):  # fmt: skip
        from bandit.learners.vw import FeatureEncoder, RewardRegressor

        if folds < 1:
            raise ValueError("folds must be ≥ 1")
        if kind not in ("hurdle", "regression"):
            raise ValueError(f"kind must be 'hurdle' or 'regression', got {kind!r}")
        unknown = sorted({r["chosen"] for r in records} - set(config.catalog.ids))
        if unknown:
            raise ValueError(
                f"the log has items the config's catalog does not: {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}; a reward model needs their features"
            )
        rng = np.random.default_rng(seed)
        self.kind = kind
        self.fold = rng.integers(0, folds, size=len(records)) if folds > 1 else np.zeros(len(records), dtype=int)
        rewards = np.array([float(r["reward"]) for r in records])
        scale = float(np.quantile(np.abs(rewards), 0.99)) if len(rewards) else 1.0
        encoder = FeatureEncoder(config)
        loss = "logistic" if kind == "hurdle" else "squared"
        self.models = [
            RewardRegressor(encoder, reward_scale=max(scale, 1e-6), seed=seed, loss=loss) for _ in range(folds)
        ]
        self.folds = folds
        fitted = [self._positive_values(records, rewards, k, shrinkage) for k in range(folds)]
        self.values = [values for values, _ in fitted]
        self.overall = [overall for _, overall in fitted]
        self.passes = passes
        order = [rng.permutation(len(records)) for _ in range(passes)]
        text = self.models[0].features
        lines = [text(r["context"], r["chosen"]) for r in records] if passes else []
        for k, model in enumerate(self.models):
            model.learn_all((lines[i], rewards[i]) for sweep in order for i in sweep.tolist()
                            if folds == 1 or self.fold[i] != k)  # fmt: skip
        self._cache: dict[tuple[int, str], dict[str, float]] = {}

    def _positive_values(
        self, records: Sequence[Mapping[str, Any]], rewards: np.ndarray, fold: int, shrinkage: float
    ) -> tuple[dict[str, float], float]:
        """Per item, the mean reward of its rewarded rounds outside ``fold``, shrunk toward the overall mean."""
        train = (self.fold != fold) if self.folds > 1 else np.ones(len(records), dtype=bool)
        positive = train & (rewards > 0)
        overall = float(rewards[positive].mean()) if positive.any() else 1.0
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for i in np.flatnonzero(positive):
            item = records[int(i)]["chosen"]
            sums[item] = sums.get(item, 0.0) + float(rewards[i])
            counts[item] = counts.get(item, 0) + 1
        return {item: (sums[item] + shrinkage * overall) / (counts[item] + shrinkage) for item in sums}, overall

    def predict(self, i: int, context: Mapping[str, Any], candidates: Sequence[str]) -> list[float]:
        """Scores of ``candidates`` for round ``i`` by the model that did not train on it."""
        k = int(self.fold[i]) if i >= 0 else 0
        cached = self._cache.setdefault((k, _context_key(context)), {})
        missing = [c for c in candidates if c not in cached]
        if missing:
            raw = self.models[k].predict(context, missing)
            if self.kind == "hurdle":
                values = self.values[k]
                raw = [p * values.get(item, self.overall[k]) for p, item in zip(raw, missing, strict=True)]
            for item, q in zip(missing, raw, strict=True):
                cached[item] = q
        return [cached[c] for c in candidates]

    def predict_rounds(self, records: Sequence[Mapping[str, Any]], rounds: Sequence[int] | None = None) -> RoundScores:
        """:meth:`predict` for many logged rounds at once, in bulk (see
        :meth:`bandit.learners.vw.RewardRegressor.predict_items`): row ``j`` is round ``rounds[j]`` of the
        records the model was trained on (default: all of them, in order), scored by the model that did not
        train on it; ``records`` are those rounds' records."""
        if rounds is None:
            if len(records) != len(self.fold):
                raise ValueError(f"{len(records)} records for a model trained on {len(self.fold)}: say which rounds")
            rounds = range(len(records))
        if len(rounds) != len(records):
            raise ValueError("one round number per record")
        items = self.models[0].encoder.items
        values = np.empty((len(records), len(items)))
        fold = self.fold[np.asarray(rounds, dtype=int)] if len(records) else np.zeros(0, dtype=int)
        for k, model in enumerate(self.models):
            rows = np.flatnonzero(fold == k)
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                values[chunk] = model.predict_items([records[int(i)]["context"] for i in chunk])
            if self.kind == "hurdle":
                positive = self.values[k]
                values[rows] *= np.array([positive.get(item, self.overall[k]) for item in items])
        return RoundScores(values, items)

    def close(self) -> None:
        for model in self.models:
            model.close()
