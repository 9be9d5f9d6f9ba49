"""``storefront bench learn``: how fast the gradient rung learns and scores, against VW and the rules on the same data.

1. **Learning.**  Simulated shoppers served by the config's rules produce the
   joined records of ``--events`` pages (the learner's input, as the joiner
   hands it over).  The slot's :class:`~bandit.learners.gradient.GradientLearner`
   learns from them (warm start excluded), then a *bare* Vowpal Wabbit learn
   loop learns from the very same records: the ``cb_explore_adf`` examples of
   the tuned SquareCB peer, formatted before the clock starts, so only
   ``learn`` is timed.  The ratio gradient/VW is the figure to read (both run
   on the same core, one after the other; machines are noisy, ratios less so).
2. **Scoring.**  ``/v1/rank`` computes a slot's probability vector once per
   request: the gradient policy's ``pmf`` over ``--candidates`` candidates (a
   catalog grown with copies of the config's items when it has fewer), timed
   per call, beside the rules policy's on the same contexts.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bandit.config import StoreConfig, load_config
from bandit.config.model import Catalog
from bandit.learners.gradient import GradientLearner, sample_contexts
from bandit.learners.vw import ExploreADF, FeatureEncoder
from bandit.policies.gradient import GradientPolicy
from bandit.policies.rules import RulesPolicy
from simulator.baselines import reward_bounds, tuned_settings
from simulator.runner import Arm, LogCollector, simulate
from simulator.scenario import load_scenario

TARGET_RATIO = 0.5  # the learner's events/s at least half a bare VW learn loop's
TARGET_SCORE_US = 200.0  # scoring a slot of 50 candidates


def register(bench: Any) -> None:
    """Add ``storefront bench learn``."""
    parser = bench.add_parser(
        "learn",
        help="gradient learner events/s vs a bare VW learn loop on the same joined events; scoring µs per slot",
    )
    parser.add_argument("--config", default="examples/storefront.yaml", help="store config (default the VR store)")
    parser.add_argument("--scenario", default="vr-store")
    parser.add_argument("--slot", help="the slot (default the first)")
    parser.add_argument("--events", type=int, default=60_000, help="pages whose joined records are learned")
    parser.add_argument("--candidates", type=int, default=50, help="candidates per scored slot (default 50)")
    parser.add_argument("--calls", type=int, default=5_000, help="timed scoring calls (default 5,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_bench_learn)


def joined_records(config: StoreConfig, scenario: str, events: int, seed: int, slot: str) -> list[Mapping[str, Any]]:
    """The slot's joined records of ``events`` pages served by the config's rules."""
    collector = LogCollector()
    simulate(config, load_scenario(scenario, config), events, seed,
             arms=[Arm("rules", "config", config, learner=collector)])  # fmt: skip
    return [r for r in collector.records if r["slot"] == slot and r.get("tier") != "pin"]


def time_gradient(config: StoreConfig, slot: str, records: Sequence[Mapping[str, Any]], seed: int) -> float:
    learner = GradientLearner(config, slot, seed)
    learner.imitate(RulesPolicy(config.slot(slot), config.version))
    started = time.perf_counter()
    learner.observe(records)
    return time.perf_counter() - started


def time_vw(config: StoreConfig, records: Sequence[Mapping[str, Any]], seed: int) -> tuple[float, str]:
    low, high = reward_bounds(config)
    adapter = ExploreADF(FeatureEncoder(config), "squarecb", reward_scale=high - low, seed=seed,
                         settings=tuned_settings("squarecb"), reward_min=low)  # fmt: skip
    examples = [
        adapter.labelled(r["context"], list(r["candidates"]), list(r["candidates"]).index(r["chosen"]),
                         float(r["propensity"]), float(r["reward"]))
        for r in records
    ]  # fmt: skip
    started = time.perf_counter()
    for example in examples:
        adapter.learn_example(example)
    seconds = time.perf_counter() - started
    adapter.close()
    return seconds, adapter.arguments


def wide_config(config: StoreConfig, n: int) -> StoreConfig:
    """``config`` with copies of its items added until the catalog has at least ``n`` (new ids, same features)."""
    items = list(config.catalog.items)
    k = 0
    while len(items) < n:
        base = config.catalog.items[k % len(config.catalog.items)]
        items.append(dataclasses.replace(base, id=f"{base.id}-copy{k // len(config.catalog.items) + 1}"))
        k += 1
    catalog = Catalog(config.catalog.features, tuple(items))
    return dataclasses.replace(config, catalog=catalog)


def time_scoring(config: StoreConfig, slot: str, n: int, calls: int, seed: int,
                 records: Sequence[Mapping[str, Any]]) -> tuple[float, float, int]:  # fmt: skip
    """µs per pmf call of the gradient policy and of the rules over ``n`` candidates (a trained snapshot)."""
    wide = wide_config(config, n)
    learner = GradientLearner(wide, slot, seed)
    learner.imitate(RulesPolicy(wide.slot(slot), wide.version))
    learner.observe(records)  # a snapshot with learned weights, not only the warm start
    policy = GradientPolicy(wide, wide.slot(slot), learner.snapshot())
    rules = RulesPolicy(wide.slot(slot), wide.version)
    candidates = list(wide.catalog.ids)[:n]
    contexts = sample_contexts(wide, min(calls, 1000), np.random.default_rng(seed))
    out = []
    for p in (policy, rules):
        p.pmf(contexts[0], candidates)  # caches
        started = time.perf_counter()
        for i in range(calls):
            p.pmf(contexts[i % len(contexts)], candidates)
        out.append((time.perf_counter() - started) / calls * 1e6)
    return out[0], out[1], len(candidates)


def run_bench_learn(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    slot = args.slot or config.slots[0].name
    records = joined_records(config, args.scenario, args.events, args.seed, slot)
    n = len(records)
    gradient = time_gradient(config, slot, records, args.seed)
    vw, arguments = time_vw(config, records, args.seed)
    ratio = (n / gradient) / (n / vw)
    print(f"{args.config}, slot {slot}: {n:,} joined records of {args.events:,} pages ({args.scenario}, rules serving)")
    print(f"  gradient learner: {n / gradient:,.0f} events/s ({gradient:.2f} s; critic + actor + trust region, "
          f"batches of {config.slot(slot).gradient.batch})")  # fmt: skip
    print(
        f"  bare VW learn loop: {n / vw:,.0f} events/s ({vw:.2f} s; examples formatted beforehand)\n    vw {arguments}"
    )
    print(
        f"  ratio gradient / VW: {ratio:.2f} (target ≥ {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    )
    gradient_us, rules_us, k = time_scoring(config, slot, args.candidates, args.calls, args.seed, records)
    print(f"scoring a slot of {k} candidates ({args.calls:,} calls, one core): gradient {gradient_us:.0f} µs, "
          f"rules {rules_us:.0f} µs ({gradient_us / rules_us:.1f}× the rules)")  # fmt: skip
    print(f"  target ≤ {TARGET_SCORE_US:.0f} µs: {'met' if gradient_us <= TARGET_SCORE_US else 'MISSED'}")
    return 0
