"""``storefront bench quality``: every rung of the ladder against the oracle and a tuned VW, on the same shoppers.

For each shipped scenario and seed, one in-process simulation serves the
same simulated shoppers (common random numbers) with every arm:

==============  ===========================================================
``oracle``      knows the truth: the best expected reward per slot
``uniform``     uniform random over the candidates
``rules``       the config's rules, escalation off everywhere
``tree``        rules → decision tree: the ladder with ``tiers: [tree]``
``ladder``      the config as written: rules → tree → gradient, every gate
``gradient``    the gradient policy serving from day one in every slot that
                escalates (warm-started by imitating the rules, no gates)
``vw-…``        Vowpal Wabbit ``cb_explore_adf`` peers, with the settings
                ``storefront bench vw-tune`` chose on a seed no run here uses
``ladder-cap``  (``vr-store`` only) the ladder with a 40 % publisher cap on
                the first slot, over windows of 2,000 impressions
==============  ===========================================================

Per arm and slot it keeps the expected reward (the truth's expectation of
what was shown, which is what comparisons should use) over the whole run and
over its last 20 %, and divides by the oracle's on the same pages.  Over
seeds it reports the mean and a 95 % t-interval.  It then checks the targets
of the top rung and prints each as met or missed, and writes everything as
JSON with ``--out``.

Separately, ``--false-promotion-seeds`` runs of the ``rules-optimal``
scenario (the merchandiser's rules already show every segment its best
hero) count promotions whose challenger was truly worse than its incumbent
on the pages of its shadow period — a false promotion.

Runs are spread over ``--jobs`` processes (default: every core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config import ExposureSettings, StoreConfig, load_config
from bandit.escalation.learner import make_learner
from simulator.baselines import VWPeer, tuned_settings
from simulator.runner import BUCKETS, PEERS, Arm, simulate, standard_arms
from simulator.scenario import load_scenario

FORMAT = "storefront.bench-quality.v1"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = {  # scenario → the example config it is written for
    "vr-store": "storefront.yaml",
    "fashion-positions": "fashion.yaml",
    "drift": "storefront.yaml",
    "launch": "storefront.yaml",
}
LAST = int(BUCKETS * 0.8)  # the last 20 % of the run: buckets 80–99
CAP = ExposureSettings(0.4, 2000)
TARGET_HERO, TARGET_PAGE = 95.0, 90.0
QUICK = {"scenarios": ["vr-store"], "events": 30_000, "seeds": 1, "peers": ["squarecb"], "false_promotion_seeds": 0}
# t quantiles (0.975) by degrees of freedom, for the intervals over seeds
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def register(bench: Any) -> None:
    """Add ``storefront bench quality``."""
    parser = bench.add_parser(
        "quality",
        help="every rung vs the oracle and tuned VW peers on the shipped scenarios (expected reward, %% of oracle)",
        description="Run uniform, rules, rules→tree, the full ladder, the gradient policy from day one, the tuned VW "
        "peers and the oracle on the same simulated shoppers, for each scenario and seed; print the % of the "
        "oracle per slot and per page (whole run and last 20%) with 95% intervals over seeds, check the targets, "
        "and write JSON.",
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--events", type=int, default=400_000, help="pages per run (default 400,000)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario: 1, 2, … (default 3)")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS),
                        help="VW peers (default all, with their tuned settings from simulator/peers.json)")  # fmt: skip
    parser.add_argument("--false-promotion-seeds", type=int, default=20,
                        help="seeds of the rules-optimal check (default 20; 0 skips it)")  # fmt: skip
    parser.add_argument("--false-promotion-events", type=int, default=150_000)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS),
                        help="run only these arms (and the oracle, always): e.g. `--arms ladder rules` with "
                        "`--peers` given no names runs no VW (default: every arm)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    parser.add_argument("--quick", action="store_true",
                        help="the CI form: vr-store, 30,000 pages, 1 seed, SquareCB only")  # fmt: skip
    parser.add_argument("--out", help="write the results as JSON here")
    parser.set_defaults(func=run_bench_quality)


# --------------------------------------------------------------------------- arms


def rules_only(config: StoreConfig) -> StoreConfig:
    """Every slot on its rules, escalation off."""
    slots = tuple(dataclasses.replace(s, tier="rules", escalation=dataclasses.replace(s.escalation, mode="off"))
                  for s in config.slots)  # fmt: skip
    return dataclasses.replace(config, slots=slots, version=f"{config.version}-rules")


def tree_only(config: StoreConfig) -> StoreConfig:
    """The escalating slots climb to a tree and no further."""
    slots = tuple(dataclasses.replace(s, escalation=dataclasses.replace(s.escalation, tiers=("tree",)))
                  for s in config.slots)  # fmt: skip
    return dataclasses.replace(config, slots=slots, version=f"{config.version}-tree")


def gradient_day_one(config: StoreConfig) -> StoreConfig:
    """Every escalating slot serves its gradient policy from the first page (imitating its rules), no gates."""
    slots = tuple(
        dataclasses.replace(s, tier="gradient", escalation=dataclasses.replace(s.escalation, mode="off"))
        if s.escalation.mode != "off" else s
        for s in config.slots
    )  # fmt: skip
    return dataclasses.replace(config, slots=slots, version=f"{config.version}-gradient")


def capped(config: StoreConfig, slot: str, cap: ExposureSettings = CAP) -> StoreConfig:
    slots = tuple(dataclasses.replace(s, exposure=cap) if s.name == slot else s for s in config.slots)
    return dataclasses.replace(config, slots=slots, version=f"{config.version}-cap")


ARMS = ("uniform", "rules", "tree", "ladder", "gradient", "ladder-cap")


def quality_arms(config: StoreConfig, scenario: str, seed: int, peers: Sequence[str],
                 only: Sequence[str] | None = None) -> list[Arm]:  # fmt: skip
    """Every arm of the comparison (``only``: just those of :data:`ARMS` named, the oracle and the peers)."""
    arms = _all_arms(config, scenario, seed, peers)
    if only is None:
        return arms
    return [a for a in arms if a.name == "oracle" or a.kind == "peer" or a.name in only]


def _all_arms(config: StoreConfig, scenario: str, seed: int, peers: Sequence[str]) -> list[Arm]:
    standard = {a.name: a for a in standard_arms(config, seed, peers=(), include_config=False)}
    arms = [standard["oracle"], standard["uniform"]]
    rules, tree, gradient = rules_only(config), tree_only(config), gradient_day_one(config)
    arms.append(Arm("rules", "config", rules, description="the rules, escalation off"))
    arms.append(Arm("tree", "config", tree, learner=make_learner(tree, seed), description="rules → tree"))
    arms.append(Arm("ladder", "config", config, learner=make_learner(config, seed),
                    description="rules → tree → gradient (the config)"))  # fmt: skip
    arms.append(Arm("gradient", "config", gradient, learner=make_learner(gradient, seed),
                    description="gradient from day one"))  # fmt: skip
    for peer in peers:
        arms.append(Arm(f"vw-{peer}", "peer", config, learner=VWPeer(config, peer, seed), description=f"VW {peer}"))
    if scenario == "vr-store":
        cap = capped(config, config.slots[0].name)
        arms.append(Arm("ladder-cap", "config", cap, learner=make_learner(cap, seed),
                        description=f"the ladder, {CAP.max_share:.0%} cap on {config.slots[0].name}"))  # fmt: skip
    return arms


# --------------------------------------------------------------------------- one run


def run_one(scenario_name: str, config_path: str, events: int, seed: int, peers: Sequence[str],
            only: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One scenario × seed: every arm on the same shoppers; returns the sums the summary needs (JSON-able)."""
    from simulator.report import launches

    config = load_config(config_path)
    scenario = load_scenario(scenario_name, config)
    arms = quality_arms(config, scenario_name, seed, peers, only)
    started = time.perf_counter()
    result = simulate(config, scenario, events, seed, arms=arms)
    seconds = time.perf_counter() - started
    slots = list(config.slot_names)
    out: dict[str, Any] = {"scenario": scenario_name, "seed": seed, "events": events, "seconds": round(seconds, 1),
                           "slots": slots, "bucket_hours": [round(h, 2) for h in result.bucket_hours],
                           "drift": [{"hour": round(h, 2), "kind": kind, "name": name}
                                     for h, kind, name in result.drift_hours],
                           "arms": {}}  # fmt: skip
    for arm in arms:
        stats = result.stats[arm.name]
        entry: dict[str, Any] = {
            "description": arm.description,
            "whole": stats.expected.sum(axis=0).tolist(),  # per slot, summed over pages
            "last": stats.expected[LAST:].sum(axis=0).tolist(),
            "buckets": np.round(stats.expected, 3).tolist(),  # (BUCKETS, slots): for the drift's aftermath
            "tiers": {tier: counts.tolist() for tier, counts in stats.tiers.items()},  # decisions per bucket
            "pages": int(stats.pages),
            "window_max_share": [
                (m / w if m >= 0 else None) for m, w in zip(stats.window_max, stats.windows, strict=True)
            ],
        }
        history = getattr(arm.learner, "history", None)
        if callable(history):
            start = scenario.start
            entry["transitions"] = [
                {"hour": round((h["at"] - start) / 3600.0, 2), "slot": h["slot"], "transition": h["transition"],
                 "version": h.get("version"), "serving": str(h.get("incumbent") or "").split(":")[0]}
                for h in history()
                if h["transition"] in ("canary", "promoted", "rollback", "fallback", "trained", "holdout")
            ]  # fmt: skip
        if arm.kind == "peer":
            entry["settings"] = arm.learner.describe()
        out["arms"][arm.name] = entry
        close = getattr(arm.learner, "close", None)
        if close is not None and arm.kind == "peer":
            close()
    found = launches(result)
    if found:
        first = slots[0]
        out["launches"] = [
            {"item": e["item"], "at_hours": e["at_hours"], "verdict": e["slots"][first]["verdict"],
             "oracle_share": e["slots"][first]["oracle_share"],
             "arms": {name: {k: a[k] for k in ("share_after_launch", "found_after_pages", "dropped_after_pages")}
                      for name, a in e["slots"][first]["arms"].items()}}
            for e in found
        ]  # fmt: skip
    return out


AFTERMATH_HOURS = 48.0  # a tier the drift made worse than the rules must be out of service this soon after it


def first_shift(run: Mapping[str, Any]) -> float | None:
    """The hour of the run's first preference shift (None: the scenario has none)."""
    return min((d["hour"] for d in run.get("drift", ()) if d["kind"] == "shift"), default=None)


def after_the_shift(run: Mapping[str, Any], arm: str, baseline: str = "rules") -> list[dict[str, Any]] | None:
    """Per slot of ``arm``: the learned tier that served when the run's first preference shift came, and what became
    of it; None when the run cannot say (no shift, or ``arm`` or ``baseline`` without transitions or buckets).

    Each transition carries the tier that serves after it. The tier serving at the shift is the one after the last
    transition before it; a slot then on its rules is left out (nothing to roll back). It is followed to the first
    transition after the shift that takes it out of service: one after which another tier serves (a rollback or a
    fallback to the rules) or a promotion (a challenger took over). A rollback that only drops a canary or a
    challenger leaves it serving and is not an exit. ``vs_baseline`` is what the slot earned from the shift to
    then, or to :data:`AFTERMATH_HOURS` after the shift if sooner, % of ``baseline``'s expected reward on the same
    pages, over the time buckets (1 % of the pages each) that overlap that span: below 100, the shift made the slot
    worse than the rules. It is the slot's reward, as the store earns it: a holdout or a canary beside the tier
    counts, and a bucket that straddles the exit counts whole.
    """
    shift = first_shift(run)
    mine, base = run["arms"].get(arm, {}), run["arms"].get(baseline, {})
    if shift is None or "transitions" not in mine or "buckets" not in mine or "buckets" not in base:
        return None
    hours = np.array(run["bucket_hours"] + [math.inf])
    got, ref = np.array(mine["buckets"]), np.array(base["buckets"])

    def replaces(t: Mapping[str, Any], serving: str) -> bool:  # does transition t take ``serving`` out of service?
        return t["transition"] == "promoted" or (t["serving"] or "rules") != serving

    out = []
    for k, slot in enumerate(run["slots"]):
        moves = [t for t in mine["transitions"] if t["slot"] == slot]
        serving, since = "rules", 0.0
        for t in (t for t in moves if t["hour"] < shift):
            if replaces(t, serving):
                serving, since = t["serving"] or "rules", t["hour"]
        if serving == "rules":
            continue
        exit_ = next((t for t in moves if t["hour"] >= shift and replaces(t, serving)), None)
        end = min(exit_["hour"] if exit_ is not None else math.inf, shift + AFTERMATH_HOURS)
        span = (hours[:-1] < end) & (hours[1:] > shift)
        ratio = 100.0 * got[span, k].sum() / ref[span, k].sum() if ref[span, k].sum() > 0 else None
        out.append({
            "slot": slot,
            "tier": serving,
            "serving_since": since,
            "left": None if exit_ is None else {"hour": exit_["hour"], "by": exit_["transition"]},
            "vs_baseline": ratio,
        })  # fmt: skip
    return out


def _aftermath_check(run: Mapping[str, Any], arm: str) -> tuple[bool | None, str]:
    """Met when every tier the shift made worse than the rules left service within :data:`AFTERMATH_HOURS`;
    None when the shift made none worse (nothing had to go) or the run cannot say."""
    rows, shift = after_the_shift(run, arm), first_shift(run)
    if rows is None or shift is None:
        return None, "not measured: needs the rules arm on the same pages (`--arms … rules`) and each arm's buckets"
    worse = [r for r in rows if r["vs_baseline"] is not None and r["vs_baseline"] < 100.0]
    parts = []
    for r in rows:
        gone = r["left"]
        left = (
            "served to the end"
            if gone is None
            else f"{gone['by']} at {gone['hour']:.0f} h, {gone['hour'] - shift:.0f} h after the shift"
        )
        versus = "" if r["vs_baseline"] is None else f"; {r['vs_baseline']:.1f}% of the rules' reward until then"
        parts.append(f"{r['slot']} ({r['tier']} since {r['serving_since']:.0f} h): {left}{versus}")
    met = all(r["left"] is not None and r["left"]["hour"] - shift <= AFTERMATH_HOURS for r in worse) if worse else None
    return met, "; ".join(parts) or "no learned tier served at the shift"


def false_promotions(config_path: str, events: int, seed: int) -> dict[str, Any]:
    """The rules-optimal scenario: every challenger that was promoted, with its true lift."""
    from simulator.bench.ladder import run_ladder_experiment

    config = load_config(config_path)
    scenario = load_scenario("rules-optimal", config)
    slot = config.slots[0].name
    experiment = run_ladder_experiment(config, scenario, slot, events, seed)
    promoted = [c for c in experiment.challengers if c.outcome.startswith("promoted")]
    return {
        "seed": seed,
        "challengers": len(experiment.challengers),
        "promoted": [{"version": c.version, "tier": c.spec["tier"], "true_lift": c.true_lift} for c in promoted],
        "false": sum(1 for c in promoted if c.true_lift is not None and c.true_lift <= 0),
    }


# --------------------------------------------------------------------------- summary


def _interval(values: Sequence[float]) -> dict[str, float | None]:
    k = len(values)
    mean = float(np.mean(values))
    if k < 2:
        return {"mean": mean, "low": None, "high": None}
    half = _T975.get(k - 1, 1.96) * float(np.std(values, ddof=1)) / math.sqrt(k)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per scenario and arm: % of the oracle (whole run, last 20 %) per slot and per page, mean and 95 % interval."""
    scenarios: dict[str, Any] = {}
    for name in dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == name]
        slots = mine[0]["slots"]
        arms: dict[str, Any] = {}
        for arm in mine[0]["arms"]:
            per: dict[str, Any] = {}
            for span in ("whole", "last"):
                pct: dict[str, list[float]] = {key: [] for key in [*slots, "page"]}
                reward = []
                for r in mine:
                    got, best = np.array(r["arms"][arm][span]), np.array(r["arms"]["oracle"][span])
                    for k, slot in enumerate(slots):
                        pct[slot].append(100.0 * got[k] / best[k] if best[k] else float("nan"))
                    pct["page"].append(100.0 * got.sum() / best.sum())
                    pages = r["events"] * (1 - LAST / BUCKETS) if span == "last" else r["events"]
                    reward.append(float(got.sum()) / pages)
                per[span] = {key: _interval(v) for key, v in pct.items()} | {"reward_per_page": _interval(reward)}
            arms[arm] = per
        scenarios[name] = {"slots": slots, "seeds": [r["seed"] for r in mine], "arms": arms}
    return scenarios


def checks(runs: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
           promotions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """The issue's targets, each met or missed, with the numbers behind it."""
    out: list[dict[str, Any]] = []

    def add(target: str, met: bool | None, detail: str) -> None:
        out.append({"target": target, "met": met, "detail": detail})

    for name, s in summary.items():
        arms, hero = s["arms"], s["slots"][0]
        if "ladder" in arms:
            h, p = arms["ladder"]["last"][hero]["mean"], arms["ladder"]["last"]["page"]["mean"]
            add(f"{name}: ladder {hero}, last 20% ≥ {TARGET_HERO:.0f}% of the oracle", h >= TARGET_HERO, f"{h:.1f}%")
            add(f"{name}: ladder page, last 20% ≥ {TARGET_PAGE:.0f}% of the oracle", p >= TARGET_PAGE, f"{p:.1f}%")
        peers = [a for a in arms if a.startswith("vw-")]
        if "ladder" in arms and peers:
            best = max(peers, key=lambda a: arms[a]["whole"]["page"]["mean"])
            mine, theirs = arms["ladder"]["whole"]["page"]["mean"], arms[best]["whole"]["page"]["mean"]
            add(f"{name}: ladder whole run above the best VW peer ({best})", mine > theirs,
                f"{mine:.1f}% vs {theirs:.1f}% of the oracle")  # fmt: skip
        if all(a in arms for a in ("rules", "tree", "ladder")):
            r, t, g = (arms[a]["last"][hero] for a in ("rules", "tree", "ladder"))
            ordered = r["mean"] < t["mean"] < g["mean"]
            apart = (
                None not in (r["high"], t["low"], t["high"], g["low"]) and r["high"] < t["low"] and t["high"] < g["low"]
            )
            add(f"{name}: each rung pays on {hero} (rules < tree < ladder, last 20%)", ordered,
                f"{r['mean']:.1f} < {t['mean']:.1f} < {g['mean']:.1f}%"
                + ("" if r["high"] is None else f"; intervals {'apart' if apart else 'overlap'}"))  # fmt: skip
    for r in runs:
        cap = r["arms"].get("ladder-cap")
        if cap is not None:
            share = cap["window_max_share"][0]
            add(f"{r['scenario']} seed {r['seed']}: with a {CAP.max_share:.0%} cap no publisher's {r['slots'][0]} "
                f"share exceeds it in any {CAP.window:,} impressions",
                share is not None and share <= CAP.max_share + 1e-9,
                f"largest share in a window {share:.1%}" if share is not None else "no full window")  # fmt: skip
        for arm in ("tree", "ladder"):
            if first_shift(r) is not None and "transitions" in r["arms"].get(arm, {}):
                add(f"{r['scenario']} seed {r['seed']}: after the drift, {arm}: a tier the shift made worse than the "
                    f"rules leaves service within {AFTERMATH_HOURS:.0f} h (rolled back, or replaced by a promoted "
                    "challenger)", *_aftermath_check(r, arm))  # fmt: skip
    if promotions:
        false = sum(p["false"] for p in promotions)
        promoted = sum(len(p["promoted"]) for p in promotions)
        add(
            f"rules-optimal, {len(promotions)} seeds: no false promotion",
            false == 0,
            f"{promoted} promotions, {false} of a challenger truly worse than its incumbent",
        )
    return out


# --------------------------------------------------------------------------- printing


def _pct(x: Mapping[str, Any]) -> str:
    if x["low"] is None:
        return f"{x['mean']:6.1f}"
    return f"{x['mean']:6.1f} ±{(x['high'] - x['low']) / 2:4.1f}"


def print_summary(data: Mapping[str, Any]) -> None:
    for name, s in data["scenarios"].items():
        slots = s["slots"]
        print(f"\n{name}: {data['events']:,} pages × seeds {s['seeds']}; % of the oracle's expected reward "
              f"(mean ± 95% half-interval over seeds)")  # fmt: skip
        head = f"  {'arm':<16} {'page':>12} {'page last20':>12} " + " ".join(f"{sl + ' last20':>14}" for sl in slots)
        print(head)
        for arm, per in s["arms"].items():
            if arm == "oracle":
                continue
            row = " ".join(f"{_pct(per['last'][sl]):>14}" for sl in slots)
            print(f"  {arm:<16} {_pct(per['whole']['page']):>12} {_pct(per['last']['page']):>12} {row}")
        reward = s["arms"]["oracle"]["whole"]["reward_per_page"]["mean"]
        print(f"  (oracle: {reward:.4f} expected reward per page over the whole run)")
    for r in data["runs"]:
        if r.get("launches"):
            print(
                f"\nlaunches in {r['scenario']} seed {r['seed']} ({r['slots'][0]}): "
                "pages until found (good) / dropped (bad)"
            )
            for e in r["launches"]:
                cells: list[str] = []
                for arm, a in e["arms"].items():
                    if arm == "oracle":
                        continue
                    value = a["found_after_pages"] if e["verdict"] == "good" else a["dropped_after_pages"]
                    cells.append(f"{arm} {'never' if value is None else f'{value:,}'}")
                print(
                    f"  {e['item']} ({e['verdict']}, oracle share {100 * (e['oracle_share'] or 0):.1f}%): "
                    + "; ".join(cells)
                )
    for r in data["runs"]:
        steps = r["arms"].get("ladder", {}).get("transitions", [])
        if steps:
            print(f"\nthe ladder in {r['scenario']} seed {r['seed']} (simulated hours):")
            for slot in r["slots"]:
                mine = [t for t in steps if t["slot"] == slot and t["transition"] != "trained"]
                line = ", ".join(f"{t['hour']:.0f} h {t['transition']} (then {t.get('serving', '?')} serves)"
                                 for t in mine)  # fmt: skip
                print(f"  {slot}: {line or 'stayed on its rules'}")
    peers = {name: a["settings"] for r in data["runs"] for name, a in r["arms"].items() if "settings" in a}
    if peers:
        print("\nVW peers (tuned by `storefront bench vw-tune` on seed 1001, never used here):")
        for name, settings in peers.items():
            print(f"  {name}: {settings}")
    print("\ntargets:")
    for c in data["checks"]:
        mark = "met   " if c["met"] else "MISSED" if c["met"] is not None else "n/a   "
        print(f"  {mark} {c['target']}: {c['detail']}")
    print(f"\n{data['seconds']:.0f} s on {data['cores']} cores ({data['jobs']} processes)")


def run_bench_quality(args: argparse.Namespace) -> int:
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    only = tuple(args.arms) if getattr(args, "arms", None) else None
    jobs = [(name, str(EXAMPLES / SCENARIOS[name]), args.events, seed, tuple(args.peers), only)
            for name in args.scenarios for seed in range(1, args.seeds + 1)]  # fmt: skip
    started = time.perf_counter()
    print(f"{len(jobs)} runs of {args.events:,} pages ({', '.join(args.scenarios)}; seeds 1–{args.seeds}) and "
          f"{args.false_promotion_seeds} rules-optimal runs on {args.jobs} processes…", file=sys.stderr)  # fmt: skip
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        pending = [pool.submit(run_one, *job) for job in jobs]
        checks_pending = [pool.submit(false_promotions, str(EXAMPLES / "storefront.yaml"), args.false_promotion_events,
                                      seed) for seed in range(1, args.false_promotion_seeds + 1)]  # fmt: skip
        runs = []
        for future in pending:
            runs.append(future.result())
            r = runs[-1]
            print(f"  {r['scenario']} seed {r['seed']}: {r['seconds']:.0f} s", file=sys.stderr)
        promotions = [f.result() for f in checks_pending]
    summary = summarise(runs)
    data = {
        "format": FORMAT,
        "command": "storefront bench quality " + " ".join(sys.argv[3:])
        if len(sys.argv) > 3
        else "storefront bench quality",
        "events": args.events,
        "seeds": args.seeds,
        "cores": os.cpu_count(),
        "jobs": args.jobs,
        "seconds": round(time.perf_counter() - started, 1),
        "peer_settings": {p: tuned_settings(p) for p in args.peers},
        "scenarios": summary,
        "runs": runs,
        "false_promotions": promotions,
        "checks": [],
    }
    data["checks"] = checks(runs, summary, promotions)
    print_summary(data)
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.out}")
    return 0
