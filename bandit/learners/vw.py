"""Vowpal Wabbit behind one adapter: the only module that imports ``vowpalwabbit``.

Examples are VW text in ADF form: one ``shared`` line with the shopper
context in namespace ``c`` and one line per candidate with its features in
namespace ``i`` (the item id, category values, bools, numbers scaled to their
declared range); ``-q ci`` crosses them, so a learner can tell that Japanese
shoppers click rhythm games.

Workspaces are created lazily, in the process that uses them: a
:class:`_Workspace` remembers its pid and refuses to run in a forked child
(create the adapter after the fork, or :meth:`ExploreADF.clone` it there).
Models are saved to files with :meth:`save` and loaded with ``model_path``;
they are never pickled.

Two adapters share the encoding:

- :class:`ExploreADF` — ``--cb_explore_adf`` with SquareCB, RegCB or
  epsilon-greedy: a full pmf over the given candidates, learning from
  ``(chosen, propensity, reward)``.  Costs are ``-reward / reward_scale``.
- :class:`RewardRegressor` — squared-loss regression of the reward on the
  same context × item features: a reward model (critic, direct-method
  estimate) for the learned tiers and off-policy evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bandit.config import StoreConfig
from bandit.policies.base import Policy

ALGORITHMS: dict[str, str] = {
    "squarecb": "--squarecb --gamma_scale 10",
    "regcb": "--regcb --mellowness 0.01",
    "epsilon": "--epsilon 0.05",
}
_NUMBER_BUCKETS = 10


def _token(value: Any) -> str:
    """A VW-safe feature token: no spaces, bars or colons."""
    return str(value).replace(" ", "_").replace("|", "_").replace(":", "_")


class FeatureEncoder:
    """Turns contexts and catalog items into VW text (namespaces ``c`` and ``i``).

    Examples
    --------
    >>> from bandit.config import parse_config
    >>> cfg = parse_config('''
    ... catalog:
    ...   features: {genre: {type: category, values: [rhythm, sim]}, price: {type: number, min: 0, max: 50}}
    ...   items: [{id: a, publisher: p, features: {genre: rhythm, price: 25}}]
    ... context: {country: {type: category, values: [JP, US]}, returning: {type: bool}}
    ... slots: [{name: hero, default: a}]
    ... reward: {window: 30m}
    ... ''')
    >>> enc = FeatureEncoder(cfg)
    >>> enc.shared({"country": "JP", "returning": True})
    'shared |c country=JP returning=true'
    >>> enc.action("a")
    '|i id=a genre=rhythm price:0.5'
    """

    def __init__(self, config: StoreConfig):
        self._context_fields = config.context.fields
        self._actions = {item.id: self._item_line(config, item.id) for item in config.catalog.items}

    @staticmethod
    def _item_line(config: StoreConfig, item_id: str) -> str:
        item = config.catalog.item(item_id)
        parts = [f"id={_token(item_id)}"]
        for spec in config.catalog.features:
            value = item.features.get(spec.name)
            if value is None:
                continue
            if spec.kind == "category":
                parts.append(f"{spec.name}={_token(value)}")
            elif spec.kind == "bool":
                parts.append(f"{spec.name}={'true' if value else 'false'}")
            else:
                scale = spec.max if spec.max else 1.0
                parts.append(f"{spec.name}:{float(value) / scale:.6g}")
        return "|i " + " ".join(parts)

    def context_features(self, context: Mapping[str, Any]) -> str:
        """The ``c`` namespace for a (normalised) context."""
        parts = []
        for spec in self._context_fields:
            value = context.get(spec.name)
            if value is None:
                continue
            if spec.kind == "bool":
                parts.append(f"{spec.name}={'true' if value else 'false'}")
            elif spec.kind in ("number", "integer") and spec.min is not None and spec.max is not None:
                span = (spec.max - spec.min) or 1.0
                share = (float(value) - spec.min) / span
                bucket = min(_NUMBER_BUCKETS - 1, max(0, int(share * _NUMBER_BUCKETS)))
                parts.append(f"{spec.name}:{share:.6g} {spec.name}_b={bucket}")
            elif spec.kind in ("number", "integer"):
                parts.append(f"{spec.name}:{float(value):.6g}")
            else:  # category, hour, day_of_week: one-hot
                parts.append(f"{spec.name}={_token(value)}")
        return "|c " + " ".join(parts)

    def shared(self, context: Mapping[str, Any]) -> str:
        return "shared " + self.context_features(context)

    def action(self, item_id: str) -> str:
        return self._actions[item_id]


class _Workspace:
    """One lazily created ``vowpalwabbit.Workspace``, bound to the process that created it."""

    def __init__(self, args: str):
        self.args = args
        self._ws: Any = None
        self._pid: int | None = None

    def get(self) -> Any:
        if self._ws is None:
            import vowpalwabbit  # the only import of vowpalwabbit in the project

            self._ws = vowpalwabbit.Workspace(self.args)
            self._pid = os.getpid()
        elif self._pid != os.getpid():
            raise RuntimeError("a VW workspace cannot be used across fork; create or clone the adapter in the child")
        return self._ws

    def save(self, path: str | Path) -> None:
        self.get().save(str(path))

    def finish(self) -> None:
        if self._ws is not None and self._pid == os.getpid():
            self._ws.finish()
        self._ws = None


class ExploreADF:
    """``cb_explore_adf`` over any candidate subset: pmf in candidate order, online learning.

    Parameters
    ----------
    encoder
        Shared :class:`FeatureEncoder` of the store config.
    algorithm
        ``squarecb`` (default), ``regcb`` or ``epsilon``.
    reward_scale
        Rewards are divided by this before becoming VW costs (``cost = -reward / reward_scale``).
    seed
        VW's ``--random_seed``.
    extra_args
        More VW arguments, appended verbatim.
    model_path
        Start from a model saved with :meth:`save`.
    """

    def __init__(
        self,
        encoder: FeatureEncoder,
        algorithm: str = "squarecb",
        reward_scale: float = 1.0,
        seed: int = 0,
        extra_args: str = "",
        model_path: str | Path | None = None,
    ):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown VW algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}")
        if not reward_scale > 0:
            raise ValueError("reward_scale must be > 0")
        self.encoder = encoder
        self.algorithm = algorithm
        self.reward_scale = float(reward_scale)
        self.seed = seed
        self.extra_args = extra_args
        args = f"--cb_explore_adf {ALGORITHMS[algorithm]} -q ci --quiet --random_seed {seed} {extra_args}".strip()
        if model_path is not None:
            args = f"--quiet -i {model_path}"
        self._workspace = _Workspace(args)
        self.learned_ = 0

    def _example(self, context: Mapping[str, Any], candidates: Sequence[str]) -> list[str]:
        action = self.encoder.action
        return [self.encoder.shared(context), *(action(c) for c in candidates)]

    def pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> list[float]:
        """Probabilities over ``candidates`` in their order (renormalised to sum to 1 in float64)."""
        if not candidates:
            raise ValueError("no candidates")
        raw = self._workspace.get().predict(self._example(context, candidates))
        probs = [max(0.0, float(p)) for p in raw]
        total = math.fsum(probs)
        if len(probs) != len(candidates) or total <= 0:
            return [1.0 / len(candidates)] * len(candidates)
        return [p / total for p in probs]

    def learn(
        self, context: Mapping[str, Any], candidates: Sequence[str], chosen: int, propensity: float, reward: float
    ) -> None:
        """Learn from one logged decision: ``candidates[chosen]`` shown with ``propensity``, earning ``reward``."""
        example = self._example(context, candidates)
        cost = -float(reward) / self.reward_scale
        example[chosen + 1] = f"0:{cost:.9g}:{max(propensity, 1e-9):.9g} {example[chosen + 1]}"
        self._workspace.get().learn(example)
        self.learned_ += 1

    def save(self, path: str | Path) -> None:
        self._workspace.save(path)

    def clone(self) -> ExploreADF:
        """An untrained adapter with the same settings (its workspace is created on first use)."""
        return ExploreADF(self.encoder, self.algorithm, self.reward_scale, self.seed, self.extra_args)

    def close(self) -> None:
        self._workspace.finish()


class RewardRegressor:
    """Regression on context × item features: a reward model for DM/DR, trees and critics.

    ``loss="squared"`` (default) predicts the reward itself, in reward units.
    ``loss="logistic"`` predicts the probability that the reward is positive
    (labels ``reward > 0``); :class:`bandit.learners.reward_model.CrossFitRewardModel`
    multiplies it by each item's mean positive reward (a hurdle model), which
    is far less noisy than squared loss when rewards are mostly zero with rare
    large purchases.  Other parameters are those of :class:`ExploreADF`.
    """

    def __init__(
        self,
        encoder: FeatureEncoder,
        reward_scale: float = 1.0,
        seed: int = 0,
        extra_args: str = "",
        model_path: str | Path | None = None,
        loss: str = "squared",
    ):
        if loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {loss!r}")
        self.encoder = encoder
        self.reward_scale = float(reward_scale)
        self.seed = seed
        self.extra_args = extra_args
        self.loss = loss
        link = "--loss_function logistic --link logistic " if loss == "logistic" else ""
        args = f"{link}-q ci --quiet --random_seed {seed} {extra_args}".strip()
        if model_path is not None:
            args = f"--quiet -i {model_path}"
        self._workspace = _Workspace(args)
        self.learned_ = 0

    def predict(self, context: Mapping[str, Any], candidates: Sequence[str]) -> list[float]:
        """Predicted reward (squared) or probability of a positive reward (logistic) per candidate."""
        ws = self._workspace.get()
        ctx = self.encoder.context_features(context)
        scale = 1.0 if self.loss == "logistic" else self.reward_scale
        return [float(ws.predict(f"{ctx} {self.encoder.action(c)}")) * scale for c in candidates]

    def learn(self, context: Mapping[str, Any], item: str, reward: float, weight: float = 1.0) -> None:
        if self.loss == "logistic":
            label = f"{1 if reward > 0 else -1} {weight:.9g}"
        else:
            label = f"{float(reward) / self.reward_scale:.9g} {weight:.9g}"
        self._workspace.get().learn(f"{label} {self.encoder.context_features(context)} {self.encoder.action(item)}")
        self.learned_ += 1

    def save(self, path: str | Path) -> None:
        self._workspace.save(path)

    def clone(self) -> RewardRegressor:
        return RewardRegressor(self.encoder, self.reward_scale, self.seed, self.extra_args, loss=self.loss)

    def close(self) -> None:
        self._workspace.finish()


class VWPolicy(Policy):
    """A slot served by an :class:`ExploreADF` learner (the simulator's peer; not a config tier).

    The explanation names the algorithm and the top-scored candidate.
    """

    tier = "vw"

    def __init__(self, slot: str, learner: ExploreADF, version: str = "vw"):
        self.slot = slot
        self.learner = learner
        self.version = version

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        probs = self.learner.pmf(context, candidates)
        top = max(range(len(probs)), key=probs.__getitem__)
        return probs, f"vw:{self.learner.algorithm}:{candidates[top]}"

    def clone(self) -> VWPolicy:
        return VWPolicy(self.slot, self.learner.clone(), self.version)
