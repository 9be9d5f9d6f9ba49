"""``storefront evaluate`` and ``storefront replay``: off-policy estimates of a policy, or of a new config by rule.

Thin: parse, read the log (:mod:`bandit.eventlog.jsonl`), call :mod:`bandit.ope.evaluation`,
print.  The estimators, their formulas and references live in :mod:`bandit.ope.estimators`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config import StoreConfig, load_config
from bandit.eventlog.events import learnable, unlearnable_reason
from bandit.eventlog.jsonl import by_slot
from bandit.learners.reward_model import CrossFitRewardModel
from bandit.ope import ESTIMATORS, Estimator, lift
from bandit.ope.evaluation import SlotReport, evaluate_slot
from bandit.policies.base import Policy
from bandit.policies.rules import RulesPolicy
from bandit.policies.uniform import UniformPolicy
from service.cli.common import CommandError, read_log

ESS_WARNING = 0.01


def register(top: Any, bench: Any) -> None:
    """Add ``evaluate`` and ``replay``."""
    p = top.add_parser(
        "evaluate",
        help="off-policy estimates of a policy's value on a joined log",
        description="Estimate, per slot, what a policy would have earned on the logged traffic (IPS, SNIPS, DM, DR "
        "with intervals, effective sample size, largest weight, unsupported mass) and its lift over the logging "
        "policy. The log format is in docs/events.md.",
    )
    p.add_argument("--log", required=True, help="joined-log JSONL (storefront export, or converted)")
    p.add_argument("--policy", required=True, metavar="CONFIG.yaml|uniform", help="the policy to evaluate")
    p.add_argument("--config", help="config whose catalog and context features the reward model uses "
                   "(default: the policy config)")  # fmt: skip
    _estimation_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = top.add_parser(
        "replay",
        help="off-policy dry run of a new config on a joined log",
        description="Evaluate a new config's rules on logged traffic: its value per slot, how often it would "
        "have shown something else, and rule by rule how many rounds each rule matched and what it earns there.",
    )
    p.add_argument("log", metavar="LOG", help="joined-log JSONL")
    p.add_argument("--config", required=True, metavar="NEW.yaml", help="the config to try")
    _estimation_args(p)
    p.set_defaults(func=cmd_replay)


def _estimation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slot", action="append", help="only this slot (repeat for several; default: every slot)")
    p.add_argument("--estimators", default="ips,snips,dm,dr", help="comma-separated (default: %(default)s)")
    p.add_argument("--clip", type=float, default=None, help="clip importance weights at M (default: none)")
    p.add_argument("--ci", choices=["normal", "bootstrap"], default="normal", help="interval (default: normal)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default: 0.95)")
    p.add_argument("--folds", type=int, default=2, help="cross-fitting folds of the reward model (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="folds, VW and bootstrap seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


# --------------------------------------------------------------------------- shared


@dataclass
class SlotResult:
    """One slot's report plus what the table warns about."""

    report: SlotReport | None
    pinned: int
    no_pmf: int
    warnings: list[str] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    differs: float | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # records no estimator may use, by reason

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.report.to_dict() if self.report else {}
        out.update({"pinned_skipped": self.pinned, "skipped": self.skipped, "records_without_pmf": self.no_pmf,
                    "warnings": self.warnings})  # fmt: skip
        if self.differs is not None:
            out["favourite_differs_from_logged"] = round(self.differs, 6)
            out["rules"] = self.rules
        return out


def _estimators(args: argparse.Namespace) -> list[Estimator]:
    names = [n.strip().lower() for n in args.estimators.split(",") if n.strip()]
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise CommandError(
            f"--estimators: unknown {', '.join(unknown) or '(none)'}; use some of: {', '.join(ESTIMATORS)}"
        )
    try:
        return [ESTIMATORS[n](clip=args.clip, confidence=args.confidence, ci=args.ci, seed=args.seed) for n in names]
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _slots(records: list[dict[str, Any]], wanted: Sequence[str] | None) -> list[tuple[str, list[dict[str, Any]]]]:
    groups = list(by_slot(records))
    if wanted:
        present = {name for name, _ in groups}
        missing = [s for s in wanted if s not in present]
        if missing:
            raise CommandError(f"--slot: the log has no records for {', '.join(missing)}")
        groups = [(name, rows) for name, rows in groups if name in wanted]
    return groups


def evaluate_records(
    slot: str,
    rows: list[dict[str, Any]],
    policy: Policy,
    model_config: StoreConfig | None,
    estimators: list[Estimator],
    folds: int,
    seed: int,
) -> tuple[SlotResult, Any]:
    """Evaluate ``policy`` on one slot's records; returns the result and the reward model (for the caller to close)."""
    rounds = learnable(rows)
    skipped = Counter(reason for r in rows if (reason := unlearnable_reason(r)) is not None)
    no_pmf = sum(1 for r in rounds if r.get("pmf") is None)
    result = SlotResult(None, skipped["pinned"], no_pmf, skipped=dict(skipped))
    if not rounds:
        why = ", ".join(f"{n:,} {reason}" for reason, n in sorted(skipped.items()))
        result.warnings.append(f"no record can be evaluated ({why}): nothing to evaluate")
        return result, None
    model = None
    if any(e.needs_model for e in estimators):
        if model_config is None:
            raise CommandError("dm and dr need a reward model: pass --config CONFIG.yaml for its features, or use "
                           "--estimators ips,snips")  # fmt: skip
        try:
            model = CrossFitRewardModel(model_config, rounds, folds=folds, seed=seed)
        except ValueError as exc:
            raise CommandError(f"slot {slot}: {exc}") from None
    report = evaluate_slot(slot, rounds, policy, model, estimators)
    result.report = report
    n = len(rounds)
    first = report.estimates[0]
    if first.unsupported_mass:
        result.warnings.append(
            f"the policy puts {first.unsupported_mass:.2%} of its probability on items the log never showed with "
            "positive probability: no estimate here can account for them"
        )
    if first.ess < ESS_WARNING * n:
        result.warnings.append(
            f"effective sample size {first.ess:.0f} is under {ESS_WARNING:.0%} of the {n:,} rounds: the estimates "
            "rest on a handful of heavily weighted rounds"
        )
    if no_pmf:
        result.warnings.append(
            f"{no_pmf:,} record(s) have no full pmf: unsupported mass cannot be measured and the lift over the "
            "logging policy is not shown"
        )
    return result, model


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_slot(result: SlotResult, title: str) -> str:
    """The table ``evaluate`` and ``replay`` print for one slot."""
    report = result.report
    lines = [title]
    if report is None:
        lines += [f"  {w}" for w in result.warnings]
        return "\n".join(lines)
    extra = "".join(f"; {n:,} {reason} skipped" for reason, n in sorted(result.skipped.items()))
    lines[0] += f": {report.n:,} rounds{extra}; logged mean reward {report.logged_mean:.4f}"
    conf = f"{report.estimates[0].confidence:.0%}"
    lines.append(
        f"  {'estimator':<9} {'value':>9} {conf + ' CI':>22} {'ESS':>8} {'max w':>8} {'clipped':>7} "
        f"{'unsupported':>11} {'lift vs logged':>15} {'lift CI':>22}"
    )
    lifts = {x.estimator: x for x in report.lifts}
    for e in report.estimates:
        unsupported = "-" if e.unsupported_mass is None else f"{e.unsupported_mass:.2%}"
        x = lifts.get(e.estimator)
        lift_text = f"{x.lift:+.4f}" if x else "-"
        lift_ci = f"[{x.ci_low:+.4f}, {x.ci_high:+.4f}]" if x else "-"
        lines.append(
            f"  {e.estimator:<9} {e.value:>9.4f} {f'[{e.ci_low:.4f}, {e.ci_high:.4f}]':>22} {e.ess:>8.0f} "
            f"{e.max_weight:>8.1f} {e.clipped:>7} {unsupported:>11} {lift_text:>15} {lift_ci:>22}"
        )
    lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    estimators = _estimators(args)
    policy_config = None if args.policy == "uniform" else load_config(args.policy)
    model_config = load_config(args.config) if args.config else policy_config
    records = read_log(args.log)
    results: dict[str, SlotResult] = {}
    for slot, rows in _slots(records, args.slot):
        if policy_config is None:
            policy: Policy = UniformPolicy(slot)
        else:
            try:
                policy = RulesPolicy(policy_config.slot(slot), policy_config.version)
            except KeyError:
                print(f"slot {slot}: not in {args.policy}; skipped", file=sys.stderr)
                continue
        result, model = evaluate_records(slot, rows, policy, model_config, estimators, args.folds, args.seed)
        if model is not None:
            model.close()
        results[slot] = result
    if args.json:
        slots = {s: r.to_dict() for s, r in results.items()}
        print(json.dumps({"log": args.log, "policy": args.policy, "slots": slots}, indent=2))
    else:
        print(f"{args.policy} on {args.log}")
        for slot, result in results.items():
            print()
            print(format_slot(result, f"slot {slot}"))
    return 0


# --------------------------------------------------------------------------- replay


def _favourite(probs: Sequence[float]) -> int:
    return int(np.argmax(probs))


def rule_table(rows: Sequence[Mapping[str, Any]], policy: Policy, target: Any, logged: Any,
               estimator: Estimator) -> tuple[list[dict[str, Any]], float]:  # fmt: skip
    """Per rule of ``policy``: rounds matched, how often its favourite differs from the logged choice, values, lift."""
    groups: dict[str, list[int]] = {}
    differs = np.zeros(len(rows), dtype=bool)
    for i, record in enumerate(rows):
        probs, explanation = policy.pmf(record["context"], record["candidates"])
        rule = explanation.removeprefix("rule:")
        groups.setdefault(rule, []).append(i)
        differs[i] = record["candidates"][_favourite(probs)] != record["chosen"]
    out = []
    for rule, index in groups.items():
        idx = np.array(index)
        entry: dict[str, Any] = {
            "rule": rule, "rounds": len(idx), "share": len(idx) / len(rows),
            "differs": float(differs[idx].mean()), "estimator": estimator.name,
        }  # fmt: skip
        sub = target.subset(idx)
        if len(idx) >= 2:
            entry["value"] = estimator.value(sub)
            if logged is not None:
                x = lift(estimator, sub, logged.subset(idx))
                entry.update(logged_value=x.incumbent, lift=x.lift, lift_low=x.ci_low, lift_high=x.ci_high)
        out.append(entry)
    return out, float(differs.mean())


def cmd_replay(args: argparse.Namespace) -> int:
    estimators = _estimators(args)
    config = load_config(args.config)
    records = read_log(args.log)
    results: dict[str, SlotResult] = {}
    for slot, rows in _slots(records, args.slot):
        try:
            policy = RulesPolicy(config.slot(slot), config.version)
        except KeyError:
            print(f"slot {slot}: not in {args.config}; skipped", file=sys.stderr)
            continue
        result, model = evaluate_records(slot, rows, policy, config, estimators, args.folds, args.seed)
        try:
            if result.report is not None and result.report.target is not None:
                rounds = learnable(rows)
                target, logged = result.report.target, result.report.logged
                chosen = next((e for e in estimators if e.name == "dr"), estimators[-1])
                result.rules, result.differs = rule_table(rounds, policy, target, logged, chosen)
        finally:
            if model is not None:
                model.close()
        results[slot] = result
    if args.json:
        slots = {s: r.to_dict() for s, r in results.items()}
        print(json.dumps({"log": args.log, "config": args.config, "slots": slots}, indent=2, default=float))
        return 0
    print(f"replay of {args.config} on {args.log}")
    for slot, result in results.items():
        print()
        print(format_slot(result, f"slot {slot}"))
        if result.differs is None:
            continue
        print(f"  {result.differs:.1%} of the rounds: the new favourite differs from the logged choice")
        print(f"\n  {'rule of ' + Path(args.config).name:<28} {'rounds':>8} {'share':>7} {'differs':>8} "
              f"{'new value':>10} {'logged':>8} {'lift':>9} {'lift CI':>22}")  # fmt: skip
        for r in result.rules:
            ci = f"[{r['lift_low']:+.4f}, {r['lift_high']:+.4f}]" if "lift" in r else "-"
            print(
                f"  {r['rule']:<28} {r['rounds']:>8,} {r['share']:>7.1%} {r['differs']:>8.1%} "
                f"{_fmt(r.get('value')):>10} {_fmt(r.get('logged_value')):>8} {_fmt(r.get('lift'), '+.4f'):>9} {ci:>22}"
            )
        print(f"  (per-rule values: {result.rules[0]['estimator'] if result.rules else ''} on the rounds each rule "
              "matches; lift is against what the logging policy earned on the same rounds)")  # fmt: skip
    return 0
