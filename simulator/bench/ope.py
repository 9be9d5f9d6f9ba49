"""``storefront bench ope``: how close do the off-policy estimates come to the simulator's truth?

For each seed: the config's rules serve ``--events`` simulated page views (the
logging policy); the joined records are collected through the simulator's
learner hook.  Each target policy (another config's rules, or uniform random)
is then evaluated off-policy on one slot's records with IPS, SNIPS, DM and DR,
and compared with its **true value on the same shoppers**: for every logged
page, ``Σ_a π(a|x) E[r | x, a]`` over the page's eligible candidates, from the
simulator's expected credited reward (the config's reward weights, window and
default).  That is the mean expected reward the target would earn if it
served those same pages, without the noise of its own draws: exactly the
quantity DR estimates.

Seeds run in parallel worker processes (``--jobs``); each creates its own VW
workspaces.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from bandit.config import load_config
from bandit.eventlog.events import learnable
from bandit.learners.reward_model import CrossFitRewardModel
from bandit.ope import DM, DR, IPS, SNIPS, Estimator
from bandit.ope.evaluation import policy_data
from bandit.policies.base import Decision, Policy
from bandit.policies.rules import RulesPolicy
from bandit.policies.uniform import UniformPolicy

TOLERANCE = 0.03
DEFAULT_TARGETS = ("examples/storefront-alt.yaml",)


class _TruthSpy(Policy):
    """Serves exactly as ``inner`` and remembers each page's true expected reward of every candidate."""

    def __init__(self, inner: Policy, view: Any, slot_index: int, item_index: Mapping[str, int]):
        self.inner = inner
        self.slot = inner.slot
        self.version = inner.version
        self.tier = inner.tier  # type: ignore[misc]
        self.view = view
        self.slot_index = slot_index
        self.item_index = item_index
        self.truth: dict[str, np.ndarray] = {}

    def decide(
        self, context: Mapping[str, Any], candidates: Sequence[str], event_id: str, position: int = 0
    ) -> Decision:
        column = self.view.expected[:, self.slot_index]
        self.truth[event_id] = np.array([column[self.item_index[c]] for c in candidates])
        return self.inner.decide(context, candidates, event_id, position)

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        return self.inner.pmf(context, candidates)

    def clone(self) -> _TruthSpy:
        return _TruthSpy(self.inner.clone(), self.view, self.slot_index, self.item_index)


@dataclass(frozen=True)
class SeedJob:
    """One seed of the benchmark: what a worker process needs to run it."""

    config_path: str
    scenario: str
    events: int
    seed: int
    slot: str
    targets: tuple[str, ...]
    folds: int
    clip: float | None
    confidence: float


def target_policy(spec: str, slot: str) -> tuple[str, Policy]:
    """``uniform`` or a config path → (display name, the slot's policy)."""
    if spec == "uniform":
        return "uniform", UniformPolicy(slot)
    config = load_config(spec)
    return spec, RulesPolicy(config.slot(slot), config.version)


def run_seed(job: SeedJob) -> dict[str, Any]:
    """Simulate, collect, evaluate every target on one seed; return truths and estimates (plain data)."""
    from simulator.baselines import TruthView
    from simulator.runner import Arm, LogCollector, simulate
    from simulator.scenario import load_scenario

    started = time.perf_counter()
    config = load_config(job.config_path)
    scenario = load_scenario(job.scenario, config)
    view = TruthView()
    spy = _TruthSpy(
        RulesPolicy(config.slot(job.slot), config.version),
        view,
        config.slot_names.index(job.slot),
        {item: k for k, item in enumerate(config.catalog.ids)},
    )
    collector = LogCollector()
    arm = Arm("logged", "config", config, {job.slot: spy}, learner=collector, view=view)
    simulate(config, scenario, job.events, job.seed, arms=[arm])
    simulated = time.perf_counter() - started
    records = [r for r in learnable(collector.records) if r["slot"] == job.slot]
    model = CrossFitRewardModel(config, records, folds=job.folds, seed=job.seed)
    estimators: list[Estimator] = [
        cls(clip=job.clip, confidence=job.confidence, seed=job.seed) for cls in (DR, IPS, SNIPS, DM)
    ]
    out: dict[str, Any] = {"seed": job.seed, "n": len(records), "targets": {}}
    try:
        logged_truth = float(np.mean([np.dot(r["pmf"], spy.truth[r["event_id"]]) for r in records]))
        out["logged_truth"] = logged_truth
        out["logged_mean"] = float(np.mean([float(r["reward"]) for r in records]))
        for spec in job.targets:
            name, policy = target_policy(spec, job.slot)
            truth = float(
                np.mean([
                    np.dot(policy.pmf(r["context"], r["candidates"])[0], spy.truth[r["event_id"]]) for r in records
                ])
            )  # fmt: skip
            data = policy_data(records, policy, model)
            rows = {}
            for estimator in estimators:
                e = estimator.estimate(data)
                rows[e.estimator] = {
                    "value": e.value, "low": e.ci_low, "high": e.ci_high, "ess": e.ess, "max_weight": e.max_weight,
                    "clipped": e.clipped, "error": (e.value - truth) / truth if truth else math.nan,
                    "covered": e.ci_low <= truth <= e.ci_high,
                }  # fmt: skip
            out["targets"][name] = {"truth": truth, "estimates": rows}
    finally:
        model.close()
    out["seconds"] = time.perf_counter() - started
    out["simulate_seconds"] = simulated
    return out


def register(bench: Any) -> None:
    """Add ``storefront bench ope``."""
    p = bench.add_parser(
        "ope",
        help="accuracy of the off-policy estimators against the simulator's truth",
        description="Log page views of the config's rules on the simulator, evaluate other policies off-policy "
        "(DR, IPS, SNIPS, DM) and compare with their true value on the same shoppers, over several seeds.",
    )
    p.add_argument("--config", default="examples/storefront.yaml", help="logging config (default: %(default)s)")
    p.add_argument("--scenario", default="vr-store", help="simulator scenario (default: %(default)s)")
    p.add_argument("--events", type=int, default=50_000, help="logged page views per seed (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=50, help="seeds 0..N-1 (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--slot", default="hero", help="slot to evaluate (default: %(default)s)")
    p.add_argument(
        "--target", action="append", metavar="CONFIG|uniform",
        help=f"target policy; repeat for several; the first is the headline (default: {DEFAULT_TARGETS[0]})",
    )  # fmt: skip
    p.add_argument("--clip", type=float, default=None, help="clip importance weights at M (default: no clipping)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--folds", type=int, default=2, help="cross-fitting folds of the reward model (default 2)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per core, at most seeds)")
    p.set_defaults(func=run_bench_ope)


def run_bench_ope(args: argparse.Namespace) -> int:
    targets = tuple(args.target or DEFAULT_TARGETS)
    config = load_config(args.config)
    try:
        for spec in targets:
            name, _ = target_policy(spec, args.slot)
            if spec != "uniform":
                other = load_config(spec)
                if other.reward != config.reward:
                    print(f"{spec}: its reward section differs from {args.config}'s; the truth would not be "
                          "the quantity estimated", file=sys.stderr)  # fmt: skip
                    return 2
        config.slot(args.slot)
    except KeyError:
        print(f"unknown slot {args.slot!r}", file=sys.stderr)
        return 2
    jobs = [
        SeedJob(
            args.config, args.scenario, args.events, seed, args.slot, targets, args.folds, args.clip, args.confidence
        )
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    workers = max(1, min(args.jobs or len(os.sched_getaffinity(0)), len(jobs)))
    started = time.perf_counter()
    print(
        f"bench ope: {args.seeds} seeds × {args.events:,} page views of {args.config} on {args.scenario}; slot "
        f"{args.slot!r}; {args.confidence:.0%} normal intervals; clip {args.clip or 'none'}; {workers} processes"
    )
    results: list[dict[str, Any]] = []
    header = f"{'seed':>5} {'truth':>8} {'DR':>8} {'rel err':>8} {'95% CI':>20} {'ok':>3} {'ESS':>7}"
    iterator: Iterator[dict[str, Any]]
    if workers == 1:
        iterator = map(run_seed, jobs)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        iterator = pool.map(run_seed, jobs)
    try:
        for name in targets[:1]:
            print(f"\ntarget {name} (per seed, DR):\n{header}")
        for result in iterator:
            results.append(result)
            t = result["targets"][_name(targets[0])]
            dr = t["estimates"]["dr"]
            print(
                f"{result['seed']:>5} {t['truth']:>8.4f} {dr['value']:>8.4f} {dr['error']:>+8.2%} "
                f"[{dr['low']:>8.4f}, {dr['high']:>8.4f}] {'yes' if dr['covered'] else 'NO':>3} {dr['ess']:>7.0f}",
                flush=True,
            )
    finally:
        if workers > 1:
            pool.shutdown()
    print(summary(results, targets, args.confidence))
    per_seed = np.mean([r["seconds"] for r in results])
    print(f"\n{len(results)} seeds in {time.perf_counter() - started:.0f}s ({per_seed:.1f}s per seed per process)")
    return 0


def _name(spec: str) -> str:
    return "uniform" if spec == "uniform" else spec


def summary(results: Sequence[Mapping[str, Any]], targets: Sequence[str], confidence: float) -> str:
    """The closing table: per target and estimator, error and coverage over the seeds."""
    lines = []
    logged = np.mean([r["logged_truth"] for r in results])
    lines.append(f"\nlogging policy: true value {logged:.4f} (mean over seeds), {results[0]['n']:,} rounds per seed")
    for spec in targets:
        name = _name(spec)
        truths = np.array([r["targets"][name]["truth"] for r in results])
        change = truths.mean() / logged - 1
        lines.append(
            f"\ntarget {name}: true value {truths.mean():.4f} (mean over seeds; {change:+.1%} vs the logging policy)"
        )
        lines.append(
            f"  {'estimator':<9} {'mean |rel err|':>14} {'max |rel err|':>13} {'within 3%':>10} "
            f"{'coverage':>9} {'mean CI ±':>10} {'mean ESS':>9}"
        )
        for est in ("dr", "ips", "snips", "dm"):
            rows = [r["targets"][name]["estimates"][est] for r in results]
            err = np.abs([x["error"] for x in rows])
            covered = np.mean([x["covered"] for x in rows])
            half = np.mean([(x["high"] - x["low"]) / 2 for x in rows]) / truths.mean()
            lines.append(
                f"  {est:<9} {err.mean():>14.2%} {err.max():>13.2%} {np.mean(err <= TOLERANCE):>10.0%} "
                f"{covered:>9.0%} {half:>+9.1%} {np.mean([x['ess'] for x in rows]):>9.0f}"
            )
        dr = [r["targets"][name]["estimates"]["dr"] for r in results]
        first = abs(dr[0]["error"])
        coverage = np.mean([x["covered"] for x in dr])
        lines.append(
            f"  claim: DR within {TOLERANCE:.0%} on the first seed: {'yes' if first <= TOLERANCE else 'NO'} "
            f"({first:.2%}); {confidence:.0%} intervals cover the truth on {coverage:.0%} of {len(dr)} seeds "
            f"(target ≥ 90%): {'yes' if coverage >= 0.9 else 'NO'}"
        )
    return "\n".join(lines)
