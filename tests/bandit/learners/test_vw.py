"""The VW adapter: pmf over any candidate subset, online learning, save/load, clone, fork guard."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit.config import StoreConfig, parse_config
from bandit.learners.vw import (
    ExploreADF,
    FeatureEncoder,
    RewardRegressor,
    VWPolicy,
    cost_range,
    describe_settings,
    reward_to_cost,
    vw_arguments,
)

CONFIG = """
catalog:
  features:
    genre: {type: category, values: [rhythm, sim, horror]}
    price: {type: number, min: 0, max: 60}
    multiplayer: {type: bool}
  items:
    - {id: beat-saber, publisher: a, features: {genre: rhythm, price: 30, multiplayer: true}}
    - {id: msfs, publisher: b, features: {genre: sim, price: 60, multiplayer: true}}
    - {id: re4, publisher: c, features: {genre: horror, price: 40, multiplayer: false}}
    - {id: synth, publisher: d, features: {genre: rhythm, price: 25, multiplayer: true}}
context:
  country: {type: category, values: [US, JP, DE]}
  returning: {type: bool}
  age: {type: integer, min: 10, max: 110}
  hour: {type: hour}
slots: [{name: hero, default: beat-saber}]
reward: {window: 30m, events: {click: 1}}
"""
BEST = {"US": "beat-saber", "JP": "synth", "DE": "msfs"}


@pytest.fixture(scope="module")
def config() -> StoreConfig:
    return parse_config(CONFIG, "vw-test.yaml")


@pytest.fixture
def encoder(config: StoreConfig) -> FeatureEncoder:
    return FeatureEncoder(config)


def train(learner: ExploreADF, rounds: int = 1500) -> None:
    """Each country has one item that is always rewarded; the rest never."""
    items = ["beat-saber", "msfs", "re4", "synth"]
    countries = list(BEST)
    rng = random.Random(0)
    for k in range(rounds):
        country = countries[k % 3]
        context = {"country": country, "returning": bool(k % 2), "age": 20 + k % 40, "hour": k % 24}
        chosen = rng.randrange(4)  # logged uniformly at random
        reward = 1.0 if items[chosen] == BEST[country] else 0.0
        learner.learn(context, items, chosen, 0.25, reward)


def test_encoding(encoder: FeatureEncoder) -> None:
    shared = encoder.shared({"country": "JP", "returning": False, "age": 60, "hour": 22})
    assert shared == "shared |c country=JP returning=false age:0.5 age_b=5 hour=22"
    assert encoder.action("re4") == "|i id=re4 genre=horror price:0.666667 multiplayer=false"


@pytest.mark.parametrize("algorithm", ["squarecb", "regcb", "epsilon"])
def test_pmf_is_a_distribution_over_the_given_candidates(encoder: FeatureEncoder, algorithm: str) -> None:
    learner = ExploreADF(encoder, algorithm, seed=1)
    for candidates in (["msfs"], ["re4", "synth"], ["beat-saber", "msfs", "re4", "synth"]):
        probs = learner.pmf({"country": "US"}, candidates)
        assert len(probs) == len(candidates)
        assert math.isclose(math.fsum(probs), 1.0, abs_tol=1e-9) and min(probs) >= 0.0
    learner.close()


def test_squarecb_learns_the_best_item_per_context(encoder: FeatureEncoder) -> None:
    learner = ExploreADF(encoder, "squarecb", seed=1)
    train(learner)
    items = ["beat-saber", "msfs", "re4", "synth"]
    for country, best in BEST.items():
        probs = learner.pmf({"country": country, "returning": True, "age": 30, "hour": 12}, items)
        assert items[max(range(4), key=probs.__getitem__)] == best, (country, probs)
        assert probs[items.index(best)] > 0.5
    # a candidate subset keeps the alignment: the best item wins wherever it sits
    subset = ["synth", "re4"]
    probs = learner.pmf({"country": "JP", "returning": True, "age": 30, "hour": 12}, subset)
    assert probs[0] > probs[1]
    assert learner.learned_ == 1500


def test_save_load_and_clone(encoder: FeatureEncoder, tmp_path: Path) -> None:
    learner = ExploreADF(encoder, "squarecb", seed=3)
    train(learner, 600)
    path = tmp_path / "hero.vw"
    learner.save(path)
    loaded = ExploreADF(encoder, "squarecb", model_path=path)
    context = {"country": "DE", "returning": False, "age": 40, "hour": 3}
    items = ["beat-saber", "msfs", "re4", "synth"]
    assert loaded.pmf(context, items) == pytest.approx(learner.pmf(context, items), abs=1e-6)
    fresh = learner.clone()
    assert fresh.learned_ == 0
    assert fresh.pmf(context, items) == pytest.approx([0.25] * 4)


def test_same_seed_same_learning(encoder: FeatureEncoder) -> None:
    a, b = ExploreADF(encoder, seed=5), ExploreADF(encoder, seed=5)
    train(a, 300)
    train(b, 300)
    context = {"country": "US", "returning": True, "age": 20, "hour": 8}
    assert a.pmf(context, ["msfs", "synth", "re4"]) == b.pmf(context, ["msfs", "synth", "re4"])


def test_the_direct_binding_learns_and_predicts_what_vws_own_wrapper_does(encoder: FeatureEncoder) -> None:
    """The adapter calls VW's C++ binding directly (no Python ``Example`` per line); a second adapter fed the
    same examples through ``vowpalwabbit.Workspace.learn``/``predict`` must end with the same numbers."""
    fast, wrapped = ExploreADF(encoder, seed=5), ExploreADF(encoder, seed=5)
    workspace = wrapped._workspace.get()
    items = ["beat-saber", "msfs", "re4", "synth"]
    rng = random.Random(3)
    for k in range(400):
        context = {"country": ["US", "JP", "DE"][k % 3], "returning": bool(k % 2), "age": 20 + k % 40, "hour": k % 24}
        chosen = rng.randrange(4)
        reward = float(rng.random() < 0.3 + 0.2 * chosen)
        assert fast._workspace.predict_multi(fast._example(context, items)) == workspace.predict(
            wrapped._example(context, items)
        )
        fast.learn(context, items, chosen, 0.25, reward)
        workspace.learn(wrapped.labelled(context, items, chosen, 0.25, reward))
    assert fast.pmf({"country": "US"}, items) != pytest.approx([0.25] * 4)  # it learned something
    regressor, own = RewardRegressor(encoder, seed=2), RewardRegressor(encoder, seed=2)
    for k in range(200):
        context = {"country": ["US", "JP", "DE"][k % 3], "returning": bool(k % 2), "age": 20 + k % 40, "hour": k % 24}
        regressor.learn(context, items[k % 4], float(k % 5))
        own._workspace.get().learn(f"{own._label(float(k % 5))} {own.features(context, items[k % 4])}")
    text = regressor.features(context, "msfs")
    assert regressor._workspace.predict_line(text) == own._workspace.get().predict(text) != 0.0


def test_workspace_refuses_to_cross_a_fork(encoder: FeatureEncoder) -> None:
    learner = ExploreADF(encoder)
    learner.pmf({"country": "US"}, ["msfs"])
    learner._workspace._pid = -1  # as a forked child would see it
    with pytest.raises(RuntimeError, match="across fork"):
        learner.pmf({"country": "US"}, ["msfs"])


def test_bad_arguments(encoder: FeatureEncoder) -> None:
    with pytest.raises(ValueError, match="unknown VW algorithm 'ucb'"):
        ExploreADF(encoder, "ucb")
    with pytest.raises(ValueError, match="reward_scale"):
        ExploreADF(encoder, reward_scale=0)


def test_reward_regressor_learns_rewards(encoder: FeatureEncoder, tmp_path: Path) -> None:
    model = RewardRegressor(encoder, reward_scale=10.0, seed=1)
    for k in range(3000):
        country = list(BEST)[k % 3]
        item = ["beat-saber", "msfs", "re4", "synth"][k % 4]
        model.learn({"country": country}, item, 8.0 if item == BEST[country] else 1.0)
    scores = model.predict({"country": "JP"}, ["beat-saber", "synth", "msfs"])
    assert scores[1] == pytest.approx(8.0, abs=1.0) and scores[0] == pytest.approx(1.0, abs=1.0)
    model.save(tmp_path / "critic.vw")
    loaded = RewardRegressor(encoder, reward_scale=10.0, model_path=tmp_path / "critic.vw")
    assert loaded.predict({"country": "JP"}, ["synth"]) == pytest.approx(scores[1:2], abs=1e-6)


def test_context_columns_hold_each_contexts_own_terms(encoder: FeatureEncoder) -> None:
    rng = random.Random(4)
    odd: list[Any] = [None, True, False, 1, 0, 1.0, "JP", "x y:z|", ["a"], "US", "true"]
    numbers: list[Any] = [None, True, 0, 1, 2.5, -7, 10**6, 55, 55.0]
    contexts = [{field: rng.choice(numbers if field == "age" else odd)
                 for field in ("country", "returning", "age", "hour") if rng.random() < 0.8}
                for _ in range(300)] + [{}]  # fmt: skip
    names, index, value = encoder.context_columns(contexts)
    for r, context in enumerate(contexts):
        row = sorted((names[k - 1], x) for k, x in zip(index[r], value[r], strict=True) if k > 0)
        assert row == sorted(encoder.context_terms(context)), context


def _trained(encoder: FeatureEncoder, loss: str, extra_args: str = "") -> tuple[RewardRegressor, list[dict]]:
    rng = random.Random(5)
    model = RewardRegressor(encoder, reward_scale=10.0, seed=1, loss=loss, extra_args=extra_args)
    contexts = [{"country": rng.choice(["US", "JP", "DE"]), "returning": rng.random() < 0.5,
                 "age": rng.randint(10, 110), "hour": rng.randrange(24)} for _ in range(400)]  # fmt: skip
    for k in range(3000):
        context = contexts[k % len(contexts)]
        item = rng.choice(encoder.items)
        best = item == BEST[context["country"]] or (context["age"] > 60 and item == "msfs")
        model.learn(context, item, rng.choice([0.0, 12.0]) if best else rng.choice([0.0, 0.0, 0.0, -2.0, 3.0]))
    return model, [*contexts, {}, {"country": "FR", "age": 500}]  # an empty context, unseen values, out of range


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_bulk_predictions_are_vws_own(encoder: FeatureEncoder, loss: str) -> None:
    """predict_items reads VW's weights once per feature and item, and must say what VW says for every row."""
    model, contexts = _trained(encoder, loss)
    bulk = model.predict_items(contexts)
    assert model.bulk_checked_ is True
    one_by_one = [model.predict(context, encoder.items) for context in contexts]
    assert bulk == pytest.approx(np.array(one_by_one), rel=1e-4, abs=1e-5)
    assert len({round(float(v), 3) for v in bulk.ravel()}) > 20  # not a constant model


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_learning_a_batch_through_vws_parser_makes_the_same_model(encoder: FeatureEncoder, loss: str) -> None:
    rng = random.Random(8)
    one_by_one = RewardRegressor(encoder, reward_scale=10.0, seed=1, loss=loss)
    batch = RewardRegressor(encoder, reward_scale=10.0, seed=1, loss=loss)
    examples = [(one_by_one.features({"country": rng.choice(["US", "JP"]), "age": rng.randint(10, 110)},
                                     rng.choice(encoder.items)), rng.choice([0.0, 0.0, -3.0, 14.0]))
                for _ in range(2000)]  # fmt: skip
    for features, reward in examples:
        one_by_one.learn_features(features, reward)
    batch.learn_all(iter(examples))
    assert batch.learned_ == one_by_one.learned_ == 2000
    contexts = [{"country": "JP", "age": 30}, {"country": "US", "age": 100}, {"age": 400}]
    expected = np.array([one_by_one.predict(c, encoder.items) for c in contexts])
    assert np.array([batch.predict(c, encoder.items) for c in contexts]) == pytest.approx(expected, abs=1e-9)
    assert batch.predict_items(contexts) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert batch.bulk_checked_
    batch.learn_all(examples[:10])  # a model that has learned goes on one example at a time
    assert batch.learned_ == 2010


def test_bulk_predictions_fall_back_to_vw_when_the_model_is_not_linear_in_the_context(encoder: FeatureEncoder) -> None:
    model, contexts = _trained(encoder, "logistic", extra_args="--interactions cci")
    bulk = model.predict_items(contexts)
    assert model.bulk_checked_ is False  # context × context × item crosses: the sum of per-feature parts is wrong
    assert bulk == pytest.approx(np.array([model.predict(c, encoder.items) for c in contexts]), rel=1e-6)


def test_cross_fitted_round_scores_are_each_rounds_out_of_fold_prediction(config: StoreConfig) -> None:
    from bandit.learners.reward_model import CrossFitRewardModel

    rng = random.Random(3)
    items = ["beat-saber", "msfs", "re4", "synth"]
    records = [{"context": {"country": rng.choice(["US", "JP"]), "age": rng.randint(10, 110)},
                "chosen": rng.choice(items), "reward": rng.choice([0.0, 0.0, 5.0])} for _ in range(600)]  # fmt: skip
    for kind in ("hurdle", "regression"):
        model = CrossFitRewardModel(config, records, folds=2, seed=1, kind=kind)
        scores = model.predict_rounds(records)
        for i in range(0, 600, 37):
            candidates = items[i % 3 :]
            assert scores(i, candidates) == pytest.approx(model.predict(i, records[i]["context"], candidates), rel=1e-4)
        picked = [5, 300, 17, 599]  # some rounds only: each still scored out of its own fold
        some = model.predict_rounds([records[i] for i in picked], picked)
        for j, i in enumerate(picked):
            assert some(j, items) == pytest.approx(model.predict(i, records[i]["context"], items), rel=1e-4)
        with pytest.raises(ValueError, match="say which rounds"):
            model.predict_rounds(records[:10])
        model.close()


def test_vw_policy_fulfils_the_policy_contract(encoder: FeatureEncoder) -> None:
    policy = VWPolicy("hero", ExploreADF(encoder, seed=2))
    candidates = ["beat-saber", "msfs", "re4"]
    decision = policy.choose({"country": "US"}, candidates, 0.7, 0)
    assert decision.tier == "vw" and decision.item in candidates and decision.propensity > 0
    assert decision.pmf[candidates.index(decision.item)] == decision.propensity
    assert decision.explanation.startswith("vw:squarecb:")
    assert policy.choose({"country": "US"}, candidates, 0.7, 0) == decision
    assert policy.clone().learner.learned_ == 0


# --------------------------------------------------------------------------- costs and settings


class _Recorder:
    """Stands in for a VW workspace: remembers the text examples it was given to learn."""

    def __init__(self) -> None:
        self.learned: list[list[str]] = []

    def learn(self, example: Sequence[str]) -> None:
        self.learned.append(list(example))


@pytest.mark.parametrize("reward", [-50.0, -1.0, 0.0, 0.5, 1.0, 13.9, 14.0, 20.0, 1e6])
def test_reward_to_cost_stays_in_the_declared_cost_range(reward: float) -> None:
    low, high = cost_range(0.0, 14.0)
    assert (low, high) == (-1.0, 0.0)
    cost = reward_to_cost(reward, 0.0, 14.0)
    assert low <= cost <= high
    assert cost == pytest.approx(-min(1.0, max(0.0, reward / 14.0)))
    assert reward_to_cost(0.0, 0.0, 14.0) == 0.0  # nothing happened: no cost, as in VW's tutorial


def test_costs_fall_as_rewards_rise_and_negative_rewards_are_mapped_too() -> None:
    rewards = [-2.0, -1.0, 0.0, 1.0, 3.0]
    costs = [reward_to_cost(r, -2.0, 5.0) for r in rewards]
    assert costs == sorted(costs, reverse=True)
    assert (costs[-1], costs[0]) == cost_range(-2.0, 5.0) == pytest.approx((-0.6, 0.4))
    assert costs[2] == 0.0


def test_learn_sends_vw_a_cost_inside_cb_min_cost_cb_max_cost(encoder: FeatureEncoder) -> None:
    learner = ExploreADF(encoder, "regcb", reward_scale=14.0)
    recorder = _Recorder()
    learner._workspace.learn_multi = recorder.learn  # type: ignore[method-assign]
    for reward in (0.0, 1.0, 14.0, 20.0):  # 20 is above the interval: clipped to cost 0, and counted
        learner.learn({"country": "US"}, ["msfs", "synth"], 1, 0.5, reward)
    labels = [example[2].split(" ", 1)[0] for example in recorder.learned]
    costs = [float(label.split(":")[1]) for label in labels]
    assert costs == pytest.approx([0.0, -1 / 14, -1.0, -1.0])
    assert all(-1.0 <= c <= 0.0 for c in costs)
    assert learner.clipped_ == 1
    assert learner.arguments.endswith("--cb_min_cost -1 --cb_max_cost 0")  # the range RegCB clamps its bounds to


def test_settings_override_the_algorithm_defaults(encoder: FeatureEncoder) -> None:
    assert (
        vw_arguments("squarecb")
        == "--cb_explore_adf --squarecb --gamma_scale 10 --gamma_exponent 0.5 --interactions ci"
    )
    args = vw_arguments("squarecb", {"gamma_scale": 300.0, "learning_rate": 1.0, "interactions": ["cci"]})
    assert "--gamma_scale 300 " in args and "--gamma_scale 10 " not in args
    assert "--learning_rate 1" in args and "--interactions ci --interactions cci" in args
    assert "--regcbopt" in vw_arguments("regcb", {"regcbopt": True})
    assert "--regcbopt" not in vw_arguments("regcb", {"regcbopt": False})
    learner = ExploreADF(encoder, "regcb", seed=1, settings={"regcbopt": True, "mellowness": 0.001})
    assert learner.arguments == vw_arguments("regcb", {"regcbopt": True, "mellowness": 0.001}, (-1.0, 0.0))
    assert "--cb_min_cost" not in vw_arguments("epsilon", None, (-1.0, 0.0))  # epsilon-greedy reads no cost range
    assert learner.clone().arguments == learner.arguments and learner.clone().settings == learner.settings
    assert math.isclose(math.fsum(learner.pmf({"country": "US"}, ["msfs", "re4"])), 1.0)  # VW accepts the line


def test_bad_settings_are_refused(encoder: FeatureEncoder) -> None:
    with pytest.raises(ValueError, match="unknown VW setting 'gamma_scale' for regcb"):
        ExploreADF(encoder, "regcb", settings={"gamma_scale": 100})
    with pytest.raises(ValueError, match="interactions"):
        vw_arguments("squarecb", {"interactions": "ci"})
    with pytest.raises(ValueError, match="not finite"):
        vw_arguments("epsilon", {"epsilon": math.nan})
    with pytest.raises(ValueError, match="plain word"):
        vw_arguments("epsilon", {"cb_type": "dr --bogus"})


def test_describe_settings_is_printable() -> None:
    assert describe_settings({}) == "VW defaults"
    assert describe_settings({"regcbopt": True, "mellowness": 0.01}) == "regcbopt mellowness=0.01"


@pytest.mark.parametrize("settings", [{"regcbopt": True}, {}])
def test_regcb_learns_the_best_item_per_context(encoder: FeatureEncoder, settings: dict) -> None:
    """With the cost range declared RegCB's bounds separate the items; without it (VW's [0, 1]) it stayed uniform."""
    learner = ExploreADF(encoder, "regcb", seed=1, settings={**settings, "mellowness": 0.001})
    train(learner, 3000)
    items = ["beat-saber", "msfs", "re4", "synth"]
    for country, best in BEST.items():
        probs = learner.pmf({"country": country, "returning": True, "age": 30, "hour": 12}, items)
        assert probs[items.index(best)] > 0.5, (country, probs)
