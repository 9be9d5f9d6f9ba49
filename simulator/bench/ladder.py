"""``storefront bench ladder``: the escalation ladder on simulated shoppers, checked against the truth.

The config arm runs with its learner (trees, shadow, gate, ramp, guardrail) on
the simulated clock; a rules-only arm serves the same shoppers with the same
random numbers.  Because the simulator knows every shopper's expected reward
for every item, the experiment can say what no production log can:

- for every challenger the learner trained, its **true** lift over the
  incumbent on the pages of its shadow period, beside the gate's off-policy
  estimate and interval — is the gate's evidence real?
- after a promotion, the slot's expected reward per decision against the
  rules-only arm on the same pages — did the promotion pay?
- after a rollback, whether the rolled-back tier had really become worse.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.config import StoreConfig, load_config
from bandit.escalation.gate import lift_gate
from bandit.escalation.ladder import build_policy
from bandit.escalation.learner import Learner
from bandit.learners.tree import train_tree
from bandit.policies.base import Policy
from simulator.progress import Progress
from simulator.runner import Arm, SimulationResult, Traffic, simulate
from simulator.scenario import Scenario, load_scenario

TRUTH_STRIDE = 4  # every 4th page of a period is scored against the truth (plenty, and 4× faster)


@dataclass
class Challenger:
    """One challenger (a trained tree or a gradient snapshot) and what happened to it."""

    version: str
    trained_at: float
    exceptions: int
    incumbent: dict[str, Any]
    spec: dict[str, Any]  # {"tier", "snapshot"}
    outcome: str = "in shadow at the end"
    decided_at: float | None = None
    gate: dict[str, Any] | None = None
    true_lift: float | None = None  # relative, over the pages of its shadow period
    true_pages: int = 0


@dataclass
class LadderExperiment:
    config: StoreConfig
    scenario: Scenario
    slot: str
    events: int
    seed: int
    seconds: float
    result: SimulationResult
    history: list[dict[str, Any]]
    challengers: list[Challenger] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)


def run_ladder_experiment(config: StoreConfig, scenario: Scenario, slot: str, events: int, seed: int,
                          progress: Any = None) -> LadderExperiment:  # fmt: skip
    """Run the config with its learner beside a rules-only arm, then score every challenger on the truth."""
    if config.slot(slot).escalation.mode == "off":
        raise ValueError(f"slot {slot!r} has escalation mode 'off': nothing to climb (set escalation.mode: auto)")
    snapshots: dict[str, dict[str, Any]] = {}  # version → {"tier", "snapshot"}: every challenger's

    def trainer(cfg: StoreConfig, name: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        snapshot = train_tree(cfg, name, records, seed=seed)
        snapshots[snapshot["version"]] = {"tier": "tree", "snapshot": snapshot}
        return snapshot

    learner = Learner(config, trainer=trainer, gate=functools.partial(lift_gate, seed=seed))
    arms = [
        Arm(
            "config",
            "config",
            config,
            learner=_Recording(learner, snapshots),
            description="the config's rules, climbing the ladder",
        ),
        Arm("rules-only", "config", config, description="the config's rules alone, on the same shoppers"),
    ]
    started = time.perf_counter()
    result = simulate(config, scenario, events, seed, arms=arms, progress=progress)
    seconds = time.perf_counter() - started
    history = [h for h in learner.history() if h["slot"] == slot]
    experiment = LadderExperiment(config, scenario, slot, events, seed, seconds, result, history)
    experiment.challengers = _challengers(history, snapshots, config)
    _score_challengers(experiment)
    experiment.phases = _phases(experiment)
    return experiment


class _Recording:
    """The learner, keeping every gradient challenger's snapshot as it enters shadow (trees are kept by the trainer)."""

    def __init__(self, learner: Learner, snapshots: dict[str, dict[str, Any]]):
        self.learner, self.snapshots = learner, snapshots

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> Any:
        out = self.learner.observe(records, now)
        for state in self.learner.states().values():
            spec = state.challenger
            if spec and spec.get("snapshot") and spec["tier"] == "gradient":
                self.snapshots.setdefault(spec["snapshot"]["version"], dict(spec))
        return out

    def policies(self, now: float) -> Mapping[str, Policy]:
        return self.learner.policies(now)


def _challengers(history: list[dict[str, Any]], snapshots: Mapping[str, dict[str, Any]],
                 config: StoreConfig) -> list[Challenger]:  # fmt: skip
    out: list[Challenger] = []
    incumbent: dict[str, Any] = {"tier": "rules", "snapshot": None}
    current: Challenger | None = None
    for h in history:
        kind = h["transition"]
        if kind == "trained":
            if current is not None and current.decided_at is None:  # an undecided gradient snapshot, replaced
                current.decided_at = h["at"]
                current.outcome = "replaced by the learner's newer snapshot"
            current = Challenger(h["version"], h["at"], int(h.get("exceptions", 0)), incumbent,
                                 snapshots[h["version"]])  # fmt: skip
            out.append(current)
        elif current is not None and kind == "gate_wait" and current.decided_at is None:
            current.gate = h.get("gate")  # the latest look, while undecided
        elif current is not None and kind in ("rejected", "ramp", "awaiting_approval") and current.decided_at is None:
            current.decided_at = h["at"]
            current.gate = h.get("gate")
            current.outcome = "rejected" if kind == "rejected" else "passed the gate"
        if kind == "promoted" and current is not None:
            current.outcome = "promoted"
            incumbent = current.spec
        elif kind in ("rollback", "fallback"):
            if current is not None and current.decided_at is None:  # dropped while in shadow
                current.decided_at = h["at"]
                current.outcome = f"{kind} in shadow"
            elif current is not None and current.outcome == "promoted":
                current.outcome = f"promoted, then {kind}"
            elif current is not None and current.outcome == "passed the gate":
                current.outcome = f"{kind} during the ramp"
            incumbent = {"tier": "rules", "snapshot": None}
    return out


def _score_challengers(experiment: LadderExperiment) -> None:
    """Each challenger's true lift over its incumbent on the pages of its shadow period.

    Policies are scored on each page's available items, which is exactly what
    the first slot of a page chooses from; later slots also lose earlier picks,
    pins and publisher caps, so for them the truth is approximate.
    """
    config, slot = experiment.config, experiment.slot
    traffic = Traffic(config, experiment.scenario, experiment.events, experiment.seed)
    truth = traffic.truth
    column = truth.slot_index[slot]
    item_index = truth.item_index
    periods = []
    for c in experiment.challengers:
        end = c.decided_at if c.decided_at is not None else np.inf
        periods.append((c, c.trained_at, end, build_policy(config, slot, c.spec),
                        build_policy(config, slot, c.incumbent), [0.0, 0.0, 0]))  # fmt: skip
    if not periods:
        return
    everything = tuple(truth.items)
    for batch in traffic.batches():
        for j in range(0, batch.n, TRUTH_STRIDE):
            now = batch.times[j]
            for _, start, end, challenger, incumbent, sums in periods:
                if not start <= now < end:
                    continue
                candidates = batch.candidates[j] or everything
                candidates = tuple(i for i in candidates if i not in config.constraints.exclude)
                expected = batch.truth.expected[j, [item_index[i] for i in candidates], column]
                sums[0] += _value(challenger, batch.contexts[j], candidates, expected)
                sums[1] += _value(incumbent, batch.contexts[j], candidates, expected)
                sums[2] += 1
    for c, _, _, _, _, sums in periods:
        c.true_pages = int(sums[2])
        if sums[2] and sums[1]:
            c.true_lift = sums[0] / sums[1] - 1.0


def _value(policy: Policy, context: Mapping[str, Any], candidates: Sequence[str], expected: np.ndarray) -> float:
    probs, _ = policy.pmf(context, candidates)
    return float(np.dot(probs, expected))


def _phases(experiment: LadderExperiment) -> list[dict[str, Any]]:
    """The slot's expected reward per decision, config arm vs rules-only, between consecutive events.

    The events are the slot's promotions, rollbacks and fallbacks, and the scenario's drift; a phase
    covers the whole time buckets between two of them.
    """
    result = experiment.result
    column = result.config.slot_names.index(experiment.slot)
    start = result.scenario.start
    hours = np.array(result.bucket_hours)
    marks = [((h["at"] - start) / 3600.0, f"after {h['transition']}") for h in experiment.history
             if h["transition"] in ("promoted", "rollback", "fallback")]  # fmt: skip
    marks += [(at, f"after {kind} {name}") for at, kind, name in result.drift_hours]
    marks.sort(key=lambda m: m[0])
    edges = [0.0] + [at for at, _ in marks] + [np.inf]
    labels = ["before any promotion"] + [label for _, label in marks]
    config_stats, rules_stats = result.stats["config"], result.stats["rules-only"]
    ends = np.append(hours[1:], np.inf)
    out = []
    for label, lo, hi in zip(labels, edges[:-1], edges[1:], strict=True):
        take = (hours >= lo) & (ends <= hi)  # whole buckets that start after one event and end before the next
        decisions = int(config_stats.decisions[take, column].sum())
        if not decisions:
            continue
        mine = float(config_stats.expected[take, column].sum()) / decisions
        rules_decisions = max(int(rules_stats.decisions[take, column].sum()), 1)
        theirs = float(rules_stats.expected[take, column].sum()) / rules_decisions
        out.append({"phase": label, "from_hour": round(lo, 2), "to_hour": None if not np.isfinite(hi) else round(hi, 2),
                    "decisions": decisions, "config": round(mine, 6), "rules_only": round(theirs, 6),
                    "lift": round(mine / theirs - 1.0, 6) if theirs else None})  # fmt: skip
    return out


# --------------------------------------------------------------------------- printing


def experiment_json(experiment: LadderExperiment) -> dict[str, Any]:
    start = experiment.scenario.start

    def hours(at: float | None) -> float | None:
        return None if at is None else round((at - start) / 3600.0, 2)

    return {
        "config": experiment.config.source, "scenario": experiment.scenario.name, "slot": experiment.slot,
        "events": experiment.events, "seed": experiment.seed, "seconds": round(experiment.seconds, 1),
        "transitions": [{"hour": hours(h["at"]), "transition": h["transition"], "reason": h["reason"],
                         "challenger": h.get("challenger")} for h in experiment.history],
        "challengers": [{"version": c.version, "trained_hour": hours(c.trained_at), "exceptions": c.exceptions,
                         "incumbent": c.incumbent["tier"] if not c.incumbent.get("snapshot")
                         else c.incumbent["snapshot"]["version"],
                         "outcome": c.outcome, "decided_hour": hours(c.decided_at),
                         "gate": None if c.gate is None else {k: c.gate.get(k) for k in (
                             "n", "look", "looks", "confidence", "lift", "relative_lift_low", "relative_lift_high",
                             "incumbent_value")},
                         "estimated_lift": None if not c.gate else round(c.gate["lift"] / (
                             abs(c.gate["incumbent_value"]) or 1.0), 6),
                         "true_lift": None if c.true_lift is None else round(c.true_lift, 6),
                         "true_pages": c.true_pages,
                         "exceptions_learned": [{"when": r["when"], "items": r["items"]}
                                                for r in c.spec["snapshot"].get("rules", [])
                                                if r.get("origin") != "config"],
                         "tier": c.spec["tier"]}
                        for c in experiment.challengers],
        "phases": experiment.phases,
        "drift": [{"hour": round(h, 2), "kind": kind, "name": name} for h, kind, name in experiment.result.drift_hours],
    }  # fmt: skip


def print_experiment(data: Mapping[str, Any]) -> None:
    print(f"{data['config']} on scenario {data['scenario']}: {data['events']:,} pages, seed {data['seed']}, "
          f"slot {data['slot']} ({data['seconds']:.0f} s)")  # fmt: skip
    print("\ntransitions (simulated hours):")
    events = [(t["hour"], t["transition"], t["reason"]) for t in data["transitions"]]
    events += [(d["hour"], f"({d['kind']})", f"scenario: {d['name']}") for d in data["drift"]]
    for hour, kind, reason in sorted(events, key=lambda e: e[0]):
        print(f"  {hour:7.1f} h  {kind:<17} {reason}")
    print("\nchallengers: the gate's off-policy estimate of the lift over the incumbent vs the truth on the same pages")
    print(f"  {'challenger':<18} {'trained':>8} {'ex.':>4}  {'gate estimate [interval]':<34} {'truth':>8}  outcome")
    for c in data["challengers"]:
        gate = c["gate"]
        if gate is None or c["estimated_lift"] is None:
            estimate = "-"
        else:
            estimate = (f"{c['estimated_lift']:+.1%} [{gate['relative_lift_low']:+.1%}, "
                        f"{gate['relative_lift_high']:+.1%}] n={gate['n']:,}")  # fmt: skip
        truth = "-" if c["true_lift"] is None else f"{c['true_lift']:+.1%}"
        print(f"  {c['version']:<18} {c['trained_hour']:7.1f}h {c['exceptions']:>4}  {estimate:<34} {truth:>8}  "
              f"{c['outcome']}")  # fmt: skip
        for rule in c["exceptions_learned"]:
            when = ", ".join(f"{k}: {json.dumps(v)}" for k, v in rule["when"].items())
            print(f"  {'':<18} {'':>8}       {when} → {', '.join(rule['items'])}")
    print(f"\n{data['slot']}: expected reward per decision (the simulator's truth), "
          "config vs rules-only on the same pages")  # fmt: skip
    for p in data["phases"]:
        to = "end" if p["to_hour"] is None else f"{p['to_hour']:.1f} h"
        lift = "-" if p["lift"] is None else f"{p['lift']:+.1%}"
        print(f"  {p['phase']:<36} {p['from_hour']:6.1f} h → {to:<8} {p['decisions']:>8,} decisions  "
              f"config {p['config']:.4f}  rules-only {p['rules_only']:.4f}  {lift}")  # fmt: skip


def register(bench: Any) -> None:
    """Add ``storefront bench ladder``."""
    parser = bench.add_parser(
        "ladder",
        help="the escalation ladder on simulated shoppers: gate estimates vs the truth, reward after promotion",
        description="Run the config with its learner beside a rules-only arm on the same simulated shoppers and "
        "print every transition, each challenger's gate estimate beside its true lift, and the slot's reward "
        "after each promotion or rollback.",
    )
    parser.add_argument("--config", default="examples/storefront.yaml", help="store config (default the VR store)")
    parser.add_argument("--scenario", default="vr-store", help="scenario name or YAML file (default vr-store)")
    parser.add_argument("--slot", default=None, help="slot to follow (default the first with escalation on)")
    parser.add_argument("--events", type=int, default=None, help="page views (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    parser.set_defaults(func=run_bench_ladder)


def run_bench_ladder(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    scenario = load_scenario(args.scenario, config)
    if args.slot is not None and args.slot not in config.slot_names:
        print(f"--slot: unknown slot {args.slot!r}; slots: {', '.join(config.slot_names)}", file=sys.stderr)
        return 2
    slot = args.slot or next((s.name for s in config.slots if s.escalation.mode != "off"), None)
    if slot is None:
        print(f"{config.source}: no slot has escalation on (escalation.mode: auto or manual)", file=sys.stderr)
        return 2
    events = args.events or scenario.events
    progress = Progress(2 * events, label="laddering")
    try:
        experiment = run_ladder_experiment(config, scenario, slot, events, args.seed, progress=progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    data = experiment_json(experiment)
    print_experiment(data)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
    return 0
