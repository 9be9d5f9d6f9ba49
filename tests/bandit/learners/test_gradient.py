"""The gradient learner: warm start, learning a known bandit, the trust region, faults, checkpoints, snapshots."""

from __future__ import annotations

import base64
import copy
import itertools
import zlib
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bandit.config import StoreConfig, load_config
from bandit.features import FeatureHashing
from bandit.learners.gradient import GradientLearner, sample_contexts
from bandit.policies.gradient import GradientPolicy, GradientSnapshotError, decode_weights, hashing_of
from bandit.policies.rules import RulesPolicy
from bandit.policies.sampling import uniform_for
from tests.conftest import STORE_CONFIG

CONFIG = load_config(STORE_CONFIG)
ITEMS = list(CONFIG.catalog.ids)
# The truth of the synthetic store: each country's click rate per item; the rules show `a` (or `b` in Japan).
RATES = {
    "US": {"a": 0.10, "b": 0.05, "c": 0.30, "d": 0.05, "e": 0.05, "f": 0.05, "g": 0.05},
    "DE": {"a": 0.10, "b": 0.05, "c": 0.05, "d": 0.05, "e": 0.30, "f": 0.05, "g": 0.05},
    "JP": {"a": 0.05, "b": 0.10, "c": 0.05, "d": 0.05, "e": 0.05, "f": 0.05, "g": 0.30},
}
BEST = {country: max(rates, key=rates.__getitem__) for country, rates in RATES.items()}


def with_gradient(config: StoreConfig = CONFIG, **settings: Any) -> StoreConfig:
    slots = tuple(replace(s, gradient=replace(s.gradient, **settings)) for s in config.slots)
    return replace(config, slots=slots)


def learner(config: StoreConfig = CONFIG, **settings: Any) -> GradientLearner:
    cfg = with_gradient(config, **{"batch": 100, "min_events": 0, **settings})
    out = GradientLearner(cfg, "hero", seed=1)
    out.imitate(RulesPolicy(cfg.slot("hero"), cfg.version))
    return out


def serve(lrn: GradientLearner, n: int, start: int = 0, seed: int = 0, rates: Any = None) -> list[dict[str, Any]]:
    """``n`` hero decisions of the learner's current snapshot on shoppers of the synthetic store, joined."""
    rng = np.random.default_rng(seed * 1_000_003 + start)
    policy = lrn.policy()
    assert policy is not None
    out = []
    for i in range(start, start + n):
        country = ("US", "DE", "JP")[i % 3]
        context = {"country": country, "device": "quest", "hour": 12}
        decision = policy.choose(context, ITEMS, uniform_for(f"e{i}", "hero"))
        reward = float(rng.random() < (rates or RATES)[country][decision.item])
        out.append({"slot": "hero", "tier": "gradient", "context": context, "candidates": ITEMS,
                    "chosen": decision.item, "propensity": decision.propensity, "reward": reward})  # fmt: skip
    return out


def learn_online(lrn: GradientLearner, decisions: int, context_of: Any, rate: Any) -> None:
    """``decisions`` hero decisions served by the learner's newest snapshot, 500 at a time, each learned once joined.

    ``context_of(i, rng)`` is the ``i``-th shopper's context and ``rate(context, item)`` the item's hit rate there.
    """
    rng = np.random.default_rng(0)
    for start in range(0, decisions, 500):
        policy = lrn.policy()
        assert policy is not None
        records = []
        for i in range(start, start + 500):
            context = context_of(i, rng)
            decision = policy.choose(context, ITEMS, uniform_for(f"e{i}", "hero"))
            hit = rng.random() < rate(context, decision.item)
            records.append({"slot": "hero", "tier": "gradient", "context": context, "candidates": ITEMS,
                            "chosen": decision.item, "propensity": decision.propensity,
                            "reward": float(hit)})  # fmt: skip
        lrn.observe(records)


def greedy(lrn: GradientLearner) -> dict[str, str]:
    policy = lrn.policy()
    assert policy is not None
    out = {}
    for country in RATES:
        scores = policy.scores({"country": country, "device": "quest", "hour": 12}, ITEMS)
        out[country] = ITEMS[int(np.argmax(scores))]
    return out


def test_the_warm_start_serves_what_the_rules_serve() -> None:
    lrn = learner()
    rules = RulesPolicy(CONFIG.slot("hero"), CONFIG.version)
    policy = lrn.policy()
    assert policy is not None and lrn.steps == 1 and lrn.learned == 0
    contexts = sample_contexts(CONFIG, 500, np.random.default_rng(3))
    agree = [np.argmax(policy.pmf(c, ITEMS)[0]) == np.argmax(rules.pmf(c, ITEMS)[0]) for c in contexts]
    assert np.mean(agree) >= 0.99


def test_it_learns_each_countrys_best_item_from_its_own_traffic() -> None:
    lrn = learner()
    assert greedy(lrn) != BEST  # the rules are wrong in every country
    for start in range(0, 12_000, 1_000):
        lrn.observe(serve(lrn, 1_000, start))
    assert greedy(lrn) == BEST
    assert lrn.learned == 12_000 and lrn.steps > 2


def test_a_fairness_weight_spreads_exposure_over_publishers_at_a_small_cost() -> None:
    # Publisher p1's item a is the best everywhere, by a little; p2's c is close behind.
    rates = {
        country: {"a": 0.12, "b": 0.04, "c": 0.10, "d": 0.04, "e": 0.04, "f": 0.04, "g": 0.04} for country in RATES
    }
    contexts = [{"country": c, "device": "quest", "hour": 12} for c in RATES]

    def trained(fairness: float) -> list[tuple[float, float]]:
        """The best publisher's share of the slot and the policy's value every 2,000 records from 7,000 to 15,000."""
        lrn = learner(fairness=fairness)
        out = []
        for start in range(0, 15_000, 1_000):
            lrn.observe(serve(lrn, 1_000, start, rates=rates))
            if start >= 6_000 and start % 2_000 == 0:
                policy = lrn.policy()
                assert policy is not None
                pmfs = [dict(zip(ITEMS, policy.pmf(c, ITEMS)[0], strict=True)) for c in contexts]
                p1 = float(np.mean([p["a"] + p["b"] for p in pmfs]))
                value = np.mean([sum(p[i] * rates[c["country"]][i] for i in ITEMS)
                                 for p, c in zip(pmfs, contexts, strict=True)])  # fmt: skip
                out.append((p1, float(value)))
        return out

    selfish, fair = trained(0.0)[-1], trained(0.5)
    assert selfish[0] > 0.6, selfish  # without the weight, the best publisher takes most of the slot
    assert fair[-1][0] < selfish[0] - 0.15, (fair, selfish)  # with it, markedly less...
    assert fair[-1][1] > 0.85 * selfish[1], (fair, selfish)  # ...for a small loss of reward
    # ...and steadily: priced on the policy's own shares, not the lagging logged ones, it does not swing from one
    # publisher to the other (it did: 17%, 73%, 93% of the slot after 5,000, 10,000 and 15,000 records)
    shares = [p1 for p1, _ in fair]
    assert max(shares) - min(shares) < 0.15, fair


def test_the_critics_uncertainty_is_one_prior_deviation_for_an_unseen_candidate_and_shrinks_where_it_looks() -> None:
    lrn = learner(prior=4.0)
    us = {"country": "US", "device": "quest", "hour": 12}
    design = lrn.space.design([us])
    column = {item: k for k, item in enumerate(lrn.space.items)}
    # Before any record every logit has the prior's deviation, 1/√prior, however many crosses it has (not √crosses).
    assert np.allclose(lrn.logit_std(design), 0.5)
    # Only `a` is shown in the US: its deviation shrinks there; an item sharing none of its crosses keeps the prior's.
    records = [{"slot": "hero", "tier": "rules", "context": us, "candidates": ITEMS, "chosen": "a",
                "propensity": 1.0, "reward": float(i % 5 == 0)} for i in range(1_000)]  # fmt: skip
    lrn.observe(records)
    std = lrn.logit_std(design)[0]
    assert std[column["a"]] < 0.15, std
    assert std[column["a"]] < std[column["c"]] <= 0.5 + 1e-9


def test_what_is_particular_to_one_item_is_learned_by_its_own_crosses_not_lent_to_its_peers() -> None:
    # d is a niche hit, good in the US only; c shares its publisher and genre and is middling everywhere.
    def rate(country: str, item: str) -> float:
        return (0.30 if country == "US" else 0.02) if item == "d" else {"a": 0.10, "b": 0.08}.get(item, 0.05)

    rng = np.random.default_rng(0)
    records = []
    for i in range(6_000):  # uniform logging: every item in every context
        country = ("US", "DE", "JP")[i % 3]
        context = {"country": country, "device": ("quest", "pcvr")[i % 2], "hour": int(rng.integers(24))}
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        records.append({"slot": "hero", "tier": "rules", "context": context, "candidates": ITEMS, "chosen": item,
                        "propensity": 1 / len(ITEMS), "reward": float(rng.random() < rate(country, item))})  # fmt: skip

    def critic(own_crosses: float) -> dict[tuple[str, str], float]:
        lrn = learner(own_crosses=own_crosses, optimism=0.0)
        lrn.observe(records)
        out = {}
        for country in ("US", "DE"):
            contexts = [{"country": country, "device": d, "hour": h} for d in ("quest", "pcvr") for h in range(24)]
            logits = np.asarray(lrn.space.design(contexts) @ lrn.critic) @ lrn.space.incidence.T + lrn.critic_bias
            for item in ("c", "d"):
                out[country, item] = float(np.mean(1 / (1 + np.exp(-logits[:, lrn.space.position[item]]))))
        return out

    def error(p: dict[tuple[str, str], float]) -> float:
        return sum(abs(p[key] - rate(*key)) for key in p)

    plain, own = critic(0.0), critic(1.0)
    # Every cross stepping alike: d's US hit rate leaks to its peer c and to d outside the US...
    assert plain["DE", "d"] > 2 * rate("DE", "d") and plain["US", "c"] > 1.3 * rate("US", "c"), plain
    # ...its own crosses stepping for the whole residual keep it where it belongs.
    assert own["DE", "d"] < 1.5 * rate("DE", "d") and own["US", "d"] > plain["US", "d"], own
    assert error(own) < 0.6 * error(plain), (own, plain)


def test_an_item_best_in_two_crossed_segments_is_served_there_only_with_its_own_pairs() -> None:
    """``d`` is a hit for US shoppers on a Quest and German ones on a PC-VR headset and a miss for the other two
    combinations (an exclusive or, which no sum of per-field weights separates).  The policy learns online from
    what it serves, starting from the rules."""

    def rate(country: str, device: str, item: str) -> float:
        if item == "d":
            return 0.30 if (country, device) in (("US", "quest"), ("DE", "pcvr")) else 0.02
        return 0.12 if item == "a" else 0.05

    def shares_of_d(own_pairs: bool) -> dict[tuple[str, str], float]:
        lrn = learner(own_pairs=own_pairs)
        learn_online(
            lrn, 60_000,
            lambda i, rng: {"country": ("US", "DE", "JP")[i % 3], "device": ("quest", "pcvr")[i // 3 % 2],
                            "hour": int(rng.integers(24))},
            lambda context, item: rate(context["country"], context["device"], item),
        )  # fmt: skip
        policy = lrn.policy()
        assert policy is not None
        d = ITEMS.index("d")
        return {(country, device): policy.pmf({"country": country, "device": device, "hour": 12}, ITEMS)[0][d]
                for country in ("US", "DE") for device in ("quest", "pcvr")}  # fmt: skip

    good, bad = [("US", "quest"), ("DE", "pcvr")], [("US", "pcvr"), ("DE", "quest")]
    plain = shares_of_d(False)
    # Per-field weights only: d is shown wherever it is good, so also where it is a miss.
    assert all(plain[key] > 0.5 for key in bad), plain
    paired = shares_of_d(True)
    assert all(paired[key] > 0.8 for key in good) and all(paired[key] < 0.15 for key in bad), paired


def test_an_item_best_for_an_age_band_is_served_there_only_with_fine_bins() -> None:
    """``d`` is a hit for shoppers aged 20 to 33 and a miss for the rest (ages 13 to 59 here, 13 to 120 declared).
    With 16 bins of the declared range, ages 20–33 are two bins of their own; with 5, the original hashing, they share
    a bin (13–34) with the teenagers, for whom ``d`` is a miss."""

    def shares_of_d(bins: int) -> dict[int, float]:
        lrn = learner(number_bins=bins)
        learn_online(
            lrn, 30_000,
            lambda i, rng: {"country": ("US", "DE", "JP")[i % 3], "device": "quest", "age": int(rng.integers(13, 60))},
            lambda context, item: (0.30 if 20 <= context["age"] <= 33 else 0.02) if item == "d" else 0.10,
        )  # fmt: skip
        policy = lrn.policy()
        assert policy is not None
        d = ITEMS.index("d")
        return {age: policy.pmf({"country": "US", "device": "quest", "age": age}, ITEMS)[0][d]
                for age in (15, 22, 30, 45)}  # fmt: skip

    coarse = shares_of_d(5)
    assert coarse[15] > 0.5, coarse  # the teenagers' bin is mostly the band's: d is shown to them too
    fine = shares_of_d(16)
    assert fine[22] > 0.8 and fine[30] > 0.8 and fine[15] < 0.15 and fine[45] < 0.15, fine


def test_the_trust_region_bounds_each_published_step() -> None:
    lrn = learner(kl_limit=0.02)
    published = []
    for start in range(0, 6_000, 500):
        published += lrn.observe(serve(lrn, 500, start))
    assert len(published) >= 2
    assert all(p.kl >= 0.02 for p in published)
    assert all(p.snapshot["version"] != q.snapshot["version"] for p, q in itertools.pairwise(published))
    wide = learner(kl_limit=50.0)
    assert [p for start in range(0, 3_000, 500) for p in wide.observe(serve(wide, 500, start))] == []


def served_kl(config: StoreConfig, slot: str, before: dict, after: dict, contexts: list[dict]) -> float:
    """Mean ``KL(before ‖ after)`` over ``contexts`` of two snapshots' served probabilities (floor included)."""
    kls = []
    for context in contexts:
        p, q = (np.array(GradientPolicy(config, config.slot(slot), s).pmf(context, list(config.catalog.ids))[0])
                for s in (before, after))  # fmt: skip
        kls.append(float(np.sum(p * np.log(p / q))))
    return float(np.mean(kls))


def test_no_published_step_leaves_the_trust_region_even_when_one_batch_would_cross_it() -> None:
    """A batch whose step would take the policy past ``kl_limit`` is cut back (TRPO's line search): every
    published snapshot is within the limit of the one before on the shoppers it learned from."""
    lrn = learner(kl_limit=0.02, learning_rate=1.0)  # steps large enough to cross the limit in one batch
    contexts = [{"country": country, "device": "quest", "hour": 12} for country in RATES]
    snapshots = [lrn.snapshot_]
    for start in range(0, 9_000, 500):  # 5,000 records without own pairs, 7,000 with (here they echo the country)
        published = lrn.observe(serve(lrn, 500, start))
        assert all(0.02 <= p.kl <= 0.0202 for p in published), [p.kl for p in published]
        snapshots += [p.snapshot for p in published]
    assert len(snapshots) >= 6
    for before, after in itertools.pairwise(snapshots):  # measured on what the workers serve
        kl = served_kl(lrn.config, "hero", before, after, contexts)
        assert kl <= 0.0202, kl
    assert greedy(lrn) == BEST  # one step at a time, it still gets there


def test_a_non_finite_update_is_dropped_and_the_last_snapshot_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    lrn = learner()
    before = lrn.snapshot_
    actor = lrn.actor.copy()
    records = serve(lrn, 100)
    records[5] = {**records[5], "reward": float("inf")}
    assert lrn.observe(records) == []
    assert lrn.nan_halts == 1 and lrn.learned == 0
    assert lrn.snapshot_ is before and np.array_equal(lrn.actor, actor)
    lrn.observe(serve(lrn, 100, 100))
    assert lrn.learned == 100  # and it goes on with the next batch


def test_a_checkpoint_continues_exactly_where_it_stopped() -> None:
    uninterrupted, stopped = learner(), learner()
    first, second = serve(uninterrupted, 1_050, 0), None
    uninterrupted.observe(first)
    stopped.observe(first)
    data = copy.deepcopy(stopped.checkpoint())
    assert len(data["pending"]) == 50  # the half batch waiting: saved with the cursor, learned once after
    data["exposure"] = {"p1": 700.0, "p2": 300.0}  # what checkpoints kept before fairness used the policy's shares
    restored = GradientLearner.restore(stopped.config, data, seed=1)
    second = serve(uninterrupted, 1_000, 1_050)
    uninterrupted.observe(second)
    restored.observe(second)
    assert restored.learned == uninterrupted.learned == 2_000
    assert np.allclose(restored.actor, uninterrupted.actor) and np.allclose(restored.critic, uninterrupted.critic)
    assert restored.snapshot()["version"] == uninterrupted.snapshot()["version"]


def test_a_checkpoint_for_other_hashing_is_refused() -> None:
    data = learner().checkpoint()
    with pytest.raises(ValueError, match="hashing differs"):
        GradientLearner.restore(with_gradient(context_bits=10), data)
    with pytest.raises(ValueError, match="not a gradient learner checkpoint"):
        GradientLearner.restore(CONFIG, {**data, "kind": "pickle"})


def test_own_pairs_are_served_as_learned_and_snapshots_without_them_are_refused() -> None:
    lrn = learner()
    for start in range(0, 2_000, 500):
        lrn.observe(serve(lrn, 500, start))
    snapshot = lrn.snapshot()
    assert snapshot["hashing"]["own_pairs"] is True
    rows, cols, _ = decode_weights(CONFIG, CONFIG.slot("hero"), snapshot)
    start = lrn.hashing.pair_rows
    assert start is not None and (rows >= start).any()  # the pairs' weights live after the single tokens'
    own = {int(lrn.hashing.item_index(item)[0]) for item in ITEMS}  # the items' id buckets
    assert set(cols[rows >= start].tolist()) <= own  # crossed with an item's own id only
    policy = GradientPolicy(CONFIG, CONFIG.slot("hero"), snapshot)
    contexts = sample_contexts(CONFIG, 50, np.random.default_rng(4))
    learned = np.asarray(lrn.space.design(contexts) @ lrn.actor) @ lrn.space.incidence.T
    served = np.array([policy.scores(context, ITEMS) for context in contexts])
    assert np.allclose(served, learned, atol=1e-4)  # float32 snapshot weights
    # A snapshot of the hashing before own pairs existed: the default refuses it, `own_pairs: false` serves it.
    without = with_gradient(own_pairs=False)
    old = learner(without).snapshot()
    assert "own_pairs" not in old["hashing"]
    with pytest.raises(GradientSnapshotError, match="differs"):
        GradientPolicy.for_slot(CONFIG, CONFIG.slot("hero"), old)
    assert GradientPolicy.for_slot(without, without.slot("hero"), old).pmf(contexts[0], ITEMS)


def test_snapshots_of_the_original_five_bins_are_refused_unless_the_slot_asks_for_them() -> None:
    assert learner().snapshot()["hashing"]["number_bins"] == 16
    five = with_gradient(number_bins=5)
    lrn = learner(five)
    for start in range(0, 2_000, 500):
        lrn.observe(serve(lrn, 500, start))
    old = lrn.snapshot()
    assert "number_bins" not in old["hashing"]  # the hashing's JSON from before the setting, unchanged
    with pytest.raises(GradientSnapshotError, match="differs"):
        GradientPolicy.for_slot(CONFIG, CONFIG.slot("hero"), old)
    with pytest.raises(ValueError, match="hashing differs"):
        GradientLearner.restore(CONFIG, lrn.checkpoint())
    # `number_bins: 5` serves it with the 5 bins it learned with (ages 13–120: 13–34, 34–56, …)
    contexts = [{**c, "age": age} for c, age in zip(sample_contexts(five, 40, np.random.default_rng(4)),
                                                    range(13, 93, 2), strict=True)]  # fmt: skip
    learned = np.asarray(lrn.space.design(contexts) @ lrn.actor) @ lrn.space.incidence.T
    served = np.array([GradientPolicy.for_slot(five, five.slot("hero"), old).scores(c, ITEMS) for c in contexts])
    assert np.allclose(served, learned, atol=1e-4)
    # items' numbers keep 5 bins whatever the slot says: price 10 of 0–100 is in the first fifth
    assert "price#0" in FeatureHashing(CONFIG, hashing_of(CONFIG.slot("hero"))).item_tokens(CONFIG.catalog.item("a"))


def test_a_store_without_a_number_in_its_context_keeps_what_it_learned_with_five_bins() -> None:
    """The bins change no token there, so a snapshot and a checkpoint from before the setting stay good."""
    ageless = replace(CONFIG, context=replace(CONFIG.context, fields=tuple(
        spec for spec in CONFIG.context.fields if spec.name != "age")))  # fmt: skip
    lrn = learner(with_gradient(ageless, number_bins=5))
    lrn.observe(serve(lrn, 500))
    old, checkpoint = lrn.snapshot(), lrn.checkpoint()
    assert "number_bins" not in old["hashing"]
    context = {"country": "US", "device": "quest", "hour": 12}
    served = GradientPolicy.for_slot(ageless, ageless.slot("hero"), old).scores(context, ITEMS)
    assert np.allclose(served, lrn.policy().scores(context, ITEMS))  # type: ignore[union-attr]
    assert GradientLearner.restore(ageless, checkpoint).learned == 500
    with pytest.raises(GradientSnapshotError, match="differs"):  # any other difference still counts
        GradientPolicy.for_slot(ageless, ageless.slot("hero"), {**old, "hashing": {**old["hashing"], "pairs": True}})


def _corrupt(snapshot: dict[str, Any], **weights: Any) -> dict[str, Any]:
    return {**snapshot, "weights": {**snapshot["weights"], **weights}}


def _packed(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes())).decode()


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda s: {**s, "kind": "storefront.tree.v1"}, "not a gradient snapshot"),
        (lambda s: {**s, "store": "another-store"}, "for store 'another-store'"),
        (lambda s: {**s, "slot": "row-1"}, "for slot 'row-1', not 'hero'"),
        (lambda s: {**s, "hashing": {**s["hashing"], "item_bits": 8}}, "feature hashing .* differs"),
        (lambda s: _corrupt(s, values="not base64!"), "not zlib\\+base64"),
        (lambda s: _corrupt(s, count=s["weights"]["count"] + 1), "values where .* were announced"),
        (lambda s: _corrupt(s, values=_packed(np.full(s["weights"]["count"], np.nan, np.float32))), "finite"),
        (lambda s: _corrupt(s, rows=_packed(np.full(s["weights"]["count"], 1 << 20, np.int32))), "outside"),
    ],
)
def test_a_snapshot_that_does_not_fit_is_refused(change: Any, pattern: str) -> None:
    snapshot = learner().snapshot()
    with pytest.raises(GradientSnapshotError, match=pattern):
        GradientPolicy.for_slot(CONFIG, CONFIG.slot("hero"), change(snapshot))
    with pytest.raises(GradientSnapshotError, match="needs a snapshot"):
        GradientPolicy.for_slot(CONFIG, CONFIG.slot("hero"), None)


def _config_with_items(items: list[dict[str, Any]]) -> StoreConfig:
    import yaml

    from bandit.config import parse_config

    data = yaml.safe_load(STORE_CONFIG.read_text())
    data["catalog"]["items"] = items
    ids = {i["id"] for i in items}
    for slot in data["slots"]:  # a removed item leaves the slots' defaults too
        default = slot["default"] if isinstance(slot["default"], list) else [slot["default"]]
        slot["default"] = [i for i in default if i in ids]
    return parse_config(yaml.safe_dump(data), "reloaded.yaml")


def test_a_reload_that_drops_an_item_keeps_serving_and_a_new_item_is_scored_by_its_features() -> None:
    lrn = learner()
    for start in range(0, 6_000, 1_000):
        lrn.observe(serve(lrn, 1_000, start))
    snapshot = lrn.snapshot()
    data_items = [{"id": i.id, "publisher": i.publisher, "features": dict(i.features)} for i in CONFIG.catalog.items]
    dropped = _config_with_items([d for d in data_items if d["id"] != "c"])
    policy = GradientPolicy.for_slot(dropped, dropped.slot("hero"), snapshot)
    remaining = [i for i in ITEMS if i != "c"]
    probs, _ = policy.pmf({"country": "US", "device": "quest"}, remaining)
    assert len(probs) == len(remaining) and min(probs) > 0
    # a new item that looks like the US favourite `c` (same publisher and features) inherits part of its score
    added = _config_with_items([*data_items, {"id": "c2", **{k: v for k, v in data_items[2].items() if k != "id"}}])
    policy = GradientPolicy.for_slot(added, added.slot("hero"), snapshot)
    both = [*ITEMS, "c2"]
    scores = dict(zip(both, policy.scores({"country": "US", "device": "quest"}, both), strict=True))
    unknown = GradientPolicy.for_slot(added, added.slot("hero"), snapshot).scores({"country": "US"}, ["c2"])
    assert scores["c2"] > np.median([scores[i] for i in ITEMS if i != "c"]) and np.isfinite(unknown).all()


def test_the_served_probabilities_keep_the_floor() -> None:
    lrn = learner(min_exploration=0.05)
    for start in range(0, 6_000, 1_000):
        lrn.observe(serve(lrn, 1_000, start))
    policy = lrn.policy()
    assert policy is not None
    for country in RATES:
        probs, why = policy.pmf({"country": country, "device": "quest"}, ITEMS)
        assert min(probs) >= 0.05 / len(ITEMS) - 1e-12
        assert why.startswith("gradient:")


def test_a_requests_own_item_is_scored_by_its_features_as_if_the_catalog_had_it() -> None:
    from bandit.config import Item

    lrn = learner()
    for start in range(0, 6_000, 1_000):
        lrn.observe(serve(lrn, 1_000, start))
    snapshot = lrn.snapshot()
    like_c: dict[str, Any] = {"publisher": "p2", "features": {"genre": "shooter", "price": 30}}
    data_items = [{"id": i.id, "publisher": i.publisher, "features": dict(i.features)} for i in CONFIG.catalog.items]
    added = _config_with_items([*data_items, {"id": "c2", **like_c}])
    in_catalog = GradientPolicy.for_slot(added, added.slot("hero"), snapshot)
    policy = GradientPolicy.for_slot(CONFIG, CONFIG.slot("hero"), snapshot)
    scoped = policy.with_request(items={"c2": Item("c2", "p2", like_c["features"])})
    both = [*ITEMS, "c2"]
    context = {"country": "US", "device": "quest"}
    assert np.allclose(scoped.scores(context, both), in_catalog.scores(context, both))
    probs, _ = scoped.pmf(context, ["c2", "a"])
    assert min(probs) > 0 and policy.with_request() is policy
    with pytest.raises(KeyError):
        policy.scores(context, ["c2"])  # unscoped, an unknown item is a caller's bug, not a silent zero
