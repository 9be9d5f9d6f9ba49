"""The run's report: ``report.json`` (the record), ``report.md`` (for people) and PNG plots.

``report.json`` is a pure function of the config, the scenario, the run
length, the seed and the mode: keys sorted, floats rounded to 6 decimals, no
timestamps, no paths.  Two runs with the same inputs write the same bytes.

Reward numbers are *per page* (summed over the page's slots) unless a column
says per decision.  ``expected`` is the truth's expected credited reward of
what was shown (little noise: use it to compare policies); ``reward`` is what
the simulated shoppers actually earned inside the reward window.
``% of oracle`` and ``regret`` compare expected rewards on the same pages.

``exposure`` is each publisher's share of a slot's impressions over the run;
``exposure_inequality`` sums it up per arm and slot: the Gini coefficient of
the shares of every catalog publisher (0: all equal; ``(n − 1) / n``: one
publisher has everything), the largest share, and the largest share one
publisher took in any window of ``window`` consecutive impressions (the
slot's ``exposure.window`` when it has a cap, else 2,000).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simulator.runner import BUCKETS, ArmStats, SimulationResult

FORMAT = "storefront.simulation.v1"
PLOTS = {
    "cumulative.png": "Cumulative expected reward and regret against the oracle, per policy",
    "reward_rate.png": "Reward per decision over time, per slot",
    "tiers.png": "Share of traffic per tier over time, per slot (config)",
    "exposure.png": "Publisher exposure per slot (config)",
}


def _r(x: Any) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else round(x, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def _rates(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [_r(a / b) if b else None for a, b in zip(num.tolist(), den.tolist(), strict=True)]


def gini(values: list[float] | list[int]) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, ``(n − 1) / n`` when one has everything.

    ``Σ_i Σ_j |x_i − x_j| / (2 n² mean)``; 0 for no values or all zeros.

    >>> gini([1, 1, 1, 1]), gini([0, 0, 0, 1]), round(gini([1, 2, 3]), 6)
    (0.0, 0.75, 0.222222)
    """
    x = np.sort(np.asarray(values, dtype=float))
    n, total = len(x), float(x.sum())
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return max(0.0, float(2.0 * (ranks * x).sum() / (n * total) - (n + 1) / n))


def exposure_inequality(
    stats: ArmStats, publishers: list[str], caps: dict[str, Any], slots: list[str]
) -> dict[str, Any]:
    """Per slot: Gini of the publisher shares, the largest share, and the largest share in any window."""
    catalog_publishers = list(dict.fromkeys(publishers))
    out: dict[str, Any] = {}
    for s, slot in enumerate(slots):
        by_publisher = dict.fromkeys(catalog_publishers, 0)
        for i, count in enumerate(stats.shown[s].tolist()):
            by_publisher[publishers[i]] += count
        shown = sum(by_publisher.values())
        top = max(catalog_publishers, key=lambda p: (by_publisher[p], -catalog_publishers.index(p)))
        window = stats.windows[s] if stats.windows else None
        full = window is not None and stats.window_max[s] >= 0
        cap = caps.get(slot)
        out[slot] = {
            "gini": _r(gini(list(by_publisher.values()))),
            "max_share": _r(by_publisher[top] / shown) if shown else None,
            "max_share_publisher": top if shown else None,
            "window": window,
            "max_window_share": _r(stats.window_max[s] / window) if full and window else None,
            "max_window_publisher": stats.window_top[s] if full else None,
            "cap": None if cap is None else {"max_share": _r(cap.max_share), "window": cap.window},
        }
    return out


def pages_per_bucket(events: int) -> np.ndarray:
    index = np.arange(events)
    return np.bincount(index * BUCKETS // events, minlength=BUCKETS)


def tier_transitions(shares: dict[str, list[float | None]], hours: list[float]) -> list[dict[str, Any]]:
    """Where the majority tier of a slot changes (``pin`` ignored: pins come and go with the context)."""
    out: list[dict[str, Any]] = []
    previous = None
    for b, at in enumerate(hours):
        best, best_share = None, 0.0
        for tier in sorted(shares):
            share = shares[tier][b]
            if tier != "pin" and share is not None and share > best_share:
                best, best_share = tier, share
        if best is None:
            continue
        if previous is None:
            out.append({"at_hours": _r(at), "from": None, "to": best})
        elif best != previous:
            out.append({"at_hours": _r(at), "from": previous, "to": best})
        previous = best
    return out


def build_report(result: SimulationResult) -> dict[str, Any]:
    """The JSON-able report (see the module docstring)."""
    config, truth_slots = result.config, result.config.slot_names
    publishers = [item.publisher for item in config.catalog.items]
    page_counts = pages_per_bucket(result.events)
    hours = result.bucket_hours
    oracle = result.stats.get("oracle")
    oracle_slot = oracle.expected.sum(axis=0) if oracle else None
    oracle_bucket = oracle.expected.sum(axis=1) if oracle else None
    policies: dict[str, Any] = {}
    timeline: dict[str, Any] = {}
    exposure: dict[str, Any] = {}
    inequality: dict[str, Any] = {}
    transitions: dict[str, Any] = {}
    ladder: dict[str, Any] = {}
    for arm in result.arms:
        stats = result.stats[arm.name]
        pages = max(stats.pages, 1)
        expected_slot = stats.expected.sum(axis=0)
        realised_slot = stats.realised.sum(axis=0)
        decisions_slot = stats.decisions.sum(axis=0)
        per_slot = {}
        for s, slot in enumerate(truth_slots):
            per_slot[slot] = {
                "decisions": int(decisions_slot[s]),
                "unfilled": int(stats.unfilled[s]),
                "mean_reward": _r(realised_slot[s] / pages),
                "mean_expected_reward": _r(expected_slot[s] / pages),
                "pct_of_oracle": _r(100.0 * expected_slot[s] / oracle_slot[s])
                if oracle_slot is not None and oracle_slot[s]
                else None,
                "regret": _r(oracle_slot[s] - expected_slot[s]) if oracle_slot is not None else None,
                "late_events": int(stats.late[s]),
            }
        total_expected = float(expected_slot.sum())
        oracle_total = float(oracle_slot.sum()) if oracle_slot is not None else 0.0
        policies[arm.name] = {
            "kind": arm.kind,
            "description": arm.description if arm.kind != "config" else Path(arm.description).name,
            "pages": stats.pages,
            "decisions": int(decisions_slot.sum()),
            "unfilled": int(stats.unfilled.sum()),
            "mean_reward": _r(realised_slot.sum() / pages),
            "mean_expected_reward": _r(total_expected / pages),
            "pct_of_oracle": _r(100.0 * total_expected / oracle_total) if oracle_total else None,
            "regret": _r(oracle_total - total_expected) if oracle_slot is not None else None,
            "late_events": int(stats.late.sum()),
            "slots": per_slot,
        }
        bucket_expected = stats.expected.sum(axis=1)
        arm_timeline: dict[str, Any] = {
            "cumulative_expected_reward": [_r(x) for x in np.cumsum(bucket_expected).tolist()],
            "reward_per_page": _rates(stats.realised.sum(axis=1), page_counts),
            "slots": {},
        }
        if oracle_bucket is not None:
            arm_timeline["cumulative_regret"] = [_r(x) for x in np.cumsum(oracle_bucket - bucket_expected).tolist()]
        arm_transitions = {}
        arm_exposure = {}
        for s, slot in enumerate(truth_slots):
            decided = stats.decisions[:, s]
            shares = {tier: _rates(counts[:, s], decided) for tier, counts in sorted(stats.tiers.items())}
            shares = {tier: v for tier, v in shares.items() if any(x for x in v)}
            arm_timeline["slots"][slot] = {
                "reward_per_decision": _rates(stats.realised[:, s], decided),
                "expected_per_decision": _rates(stats.expected[:, s], decided),
                "tier_share": shares,
            }
            arm_transitions[slot] = tier_transitions(shares, hours)
            by_publisher: dict[str, int] = {}
            for i, count in enumerate(stats.shown[s].tolist()):
                if count:
                    by_publisher[publishers[i]] = by_publisher.get(publishers[i], 0) + count
            shown = max(1, int(stats.shown[s].sum()))
            arm_exposure[slot] = {p: _r(c / shown) for p, c in by_publisher.items()}
        timeline[arm.name] = arm_timeline
        transitions[arm.name] = arm_transitions
        exposure[arm.name] = arm_exposure
        caps = {slot.name: slot.exposure for slot in arm.config.slots if slot.exposure}
        inequality[arm.name] = exposure_inequality(stats, publishers, caps, list(truth_slots))
        history = getattr(arm.learner, "history", None)
        if callable(history):
            ladder[arm.name] = [
                {"at_hours": _r((h["at"] - result.scenario.start) / 3600.0), "slot": h["slot"],
                 "transition": h["transition"], "reason": h["reason"]}
                for h in history()
            ]  # fmt: skip
    return {
        "format": FORMAT,
        "mode": result.mode,
        "scenario": {"name": result.scenario.name, "description": result.scenario.description},
        "config": {"store": config.name, "version": config.version, "slots": list(truth_slots)},
        "events": result.events,
        "seed": result.seed,
        "reward_window_seconds": _r(config.reward.window_seconds),
        "policies": policies,
        "order": [arm.name for arm in result.arms],
        "timeline": {"bucket_start_hours": [_r(h) for h in hours], "policies": timeline},
        "drift": [{"at_hours": _r(at), "kind": kind, "name": name} for at, kind, name in result.drift_hours],
        "tier_transitions": transitions,
        "ladder": ladder,
        "exposure": exposure,
        "exposure_inequality": inequality,
        "launches": launches(result),
        "notes": list(result.notes),
    }


FOUND_SHARE = 0.5  # a good launch is found once an arm shows it at least half as often as the oracle does
GOOD_LAUNCH = 0.05  # a launch is good when the oracle gives it ≥ 5 % of the slot after it launched...
BAD_LAUNCH = 0.01  # ...bad under 1 %, and dropped once an arm shows it to under 1 % of the slot


def launches(result: SimulationResult) -> list[dict[str, Any]]:
    """How fast each arm found a good launch and dropped a bad one, slot by slot.

    Per launched item and slot: the oracle's share of the slot's impressions after the launch (what the item
    deserves) and, per arm, its share in every time bucket from the launch on, with ``found_after_pages``
    (good launches: pages from the launch to the end of the first bucket in which the arm showed it at least
    half as often as the oracle) or ``dropped_after_pages`` (bad launches: to the end of the first bucket in
    which the arm showed it to under 1 % of the slot's decisions).  ``None``: never, within the run.
    """
    oracle = result.stats.get("oracle")
    first = next(iter(result.stats.values()), None)
    if oracle is None or first is None or not first.watch:
        return []
    items = result.config.catalog.ids
    per_bucket = pages_per_bucket(result.events)
    launched = sorted((at, name) for at, kind, name in result.drift_hours if kind == "launch")  # as `watch` is
    out = []
    for k, item_index in enumerate(first.watch):
        at_hours, name = launched[k] if k < len(launched) else (None, "")
        hours = np.array(result.bucket_hours)
        start = int(np.searchsorted(hours, at_hours, side="right")) - 1 if at_hours is not None else 0
        start = max(start, 0)
        entry: dict[str, Any] = {"item": items[item_index], "drift": name, "at_hours": _r(at_hours), "slots": {}}
        for s, slot in enumerate(result.config.slot_names):
            oracle_shares = _rates(oracle.watched[start:, s, k], oracle.decisions[start:, s])
            decided = int(oracle.decisions[start:, s].sum())
            deserved = float(oracle.watched[start:, s, k].sum()) / decided if decided else 0.0
            verdict = "good" if deserved >= GOOD_LAUNCH else "bad" if deserved < BAD_LAUNCH else "middling"
            arms: dict[str, Any] = {}
            for arm in result.arms:
                stats = result.stats[arm.name]
                shares = _rates(stats.watched[start:, s, k], stats.decisions[start:, s])
                found = dropped = None
                since = 0
                for b, share in enumerate(shares):
                    since += int(per_bucket[start + b])
                    if share is None:
                        continue
                    deserves = oracle_shares[b]
                    if verdict == "good" and found is None and deserves and share >= FOUND_SHARE * deserves:
                        found = since
                    if verdict == "bad" and dropped is None and b > 0 and share < BAD_LAUNCH:
                        dropped = since
                total = int(stats.decisions[start:, s].sum())
                arms[arm.name] = {
                    "share_after_launch": _r(float(stats.watched[start:, s, k].sum()) / total) if total else None,
                    "share_by_bucket": shares,
                    "found_after_pages": found,
                    "dropped_after_pages": dropped,
                }
            entry["slots"][slot] = {"verdict": verdict, "oracle_share": _r(deserved), "arms": arms}
        out.append(entry)
    return out


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- markdown


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def report_markdown(report: dict[str, Any], plots: list[str], plot_note: str = "") -> str:
    policies = report["policies"]
    lines = [
        f"# Simulation: {report['scenario']['name']} × store {report['config']['store']}",
        "",
        f"- mode: {report['mode']}; {report['events']:,} page views; seed {report['seed']}; "
        f"config version {report['config']['version']}; reward window {report['reward_window_seconds']:g}s",
    ]
    if report["scenario"]["description"]:
        lines.append(f"- scenario: {' '.join(report['scenario']['description'].split())}")
    lines += [
        "",
        "Rewards are per page (all slots). *Expected* is the truth's expected credited reward of what was shown "
        "(use it to compare policies); *reward* is what the simulated shoppers earned inside the window. "
        "Regret is the oracle's expected reward minus the policy's, summed over all pages.",
        "",
        "| policy | kind | mean reward | mean expected | % of oracle | regret | late events | unfilled |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in report["order"]:
        p = policies[name]
        lines.append(
            f"| {name} | {p['kind']} | {_fmt(p['mean_reward'])} | {_fmt(p['mean_expected_reward'])} | "
            f"{_fmt(p['pct_of_oracle'], 1)} | {_fmt(p['regret'], 1)} | {p['late_events']} | {p['unfilled']} |"
        )
    lines += ["", "## Per slot", ""]
    for slot in report["config"]["slots"]:
        lines += [
            f"### {slot}",
            "",
            "| policy | mean reward | mean expected | % of oracle | regret | late events |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in report["order"]:
            s = policies[name]["slots"][slot]
            lines.append(
                f"| {name} | {_fmt(s['mean_reward'])} | {_fmt(s['mean_expected_reward'])} | "
                f"{_fmt(s['pct_of_oracle'], 1)} | {_fmt(s['regret'], 1)} | {s['late_events']} |"
            )
        lines.append("")
    lines += ["## Tier timeline", ""]
    for name in report["order"]:
        if policies[name]["kind"] not in ("config", "live"):
            continue
        for slot, changes in report["tier_transitions"][name].items():
            steps = " → ".join(
                f"{c['to']} (from {c['at_hours']:g} h)" if c["from"] else f"{c['to']} (at start)" for c in changes
            )
            lines.append(f"- {name} / {slot}: {steps or 'no decisions'}")
    for name, entries in report.get("ladder", {}).items():
        lines += ["", f"## Ladder transitions ({name})", ""]
        if not entries:
            lines.append("- none")
        lines += [f"- {e['at_hours']:g} h, {e['slot']}: **{e['transition']}** — {e['reason']}" for e in entries]
    if report["drift"]:
        lines += ["", "## Drift", ""]
        lines += [f"- {d['at_hours']:g} h: {d['kind']} `{d['name']}`" for d in report["drift"]]
    lines += exposure_table(report)
    lines += launch_table(report)
    lines += ["", "## Publisher exposure (config)", ""]
    exposure_arm = "live" if "live" in report["exposure"] else "config" if "config" in report["exposure"] else None
    if exposure_arm:
        for slot, shares in report["exposure"][exposure_arm].items():
            top = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            lines.append(f"- {slot}: " + ", ".join(f"{p} {100 * v:.1f}%" for p, v in top))
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    lines += ["", "## Plots", ""]
    if plots:
        lines += [f"![{PLOTS[p]}]({p})" for p in plots]
    if plot_note:
        lines.append(plot_note)
    return "\n".join(lines) + "\n"


def exposure_table(report: dict[str, Any]) -> list[str]:
    """The table *Reward vs exposure inequality*: per arm, the expected reward beside the headline slot's inequality.

    The headline slot is the first slot with an exposure cap in any arm, else the first slot of the page.
    """
    inequality = report.get("exposure_inequality") or {}
    slots = report["config"]["slots"]
    if not inequality or not slots:
        return []
    capped = [slot for slot in slots if any((arm.get(slot) or {}).get("cap") for arm in inequality.values())]
    slot = capped[0] if capped else slots[0]
    windows = {arm[slot]["window"] for arm in inequality.values() if arm.get(slot, {}).get("window")}
    window = f"{min(windows):,}" if len(windows) == 1 else "window"
    lines = [
        "",
        "## Reward vs exposure inequality",
        "",
        f"Slot `{slot}`: Gini of the publishers' shares over the run (every catalog publisher counts, 0 = equal), "
        f"the largest publisher's share, and the largest share one publisher took in any {window} consecutive "
        "impressions of the slot; the cap, where the arm's config sets one. Rewards are per page.",
        "",
        f"| policy | mean expected | % of oracle | {slot} Gini | {slot} max share | max share in {window} | cap |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}%"

    for name in report["order"]:
        p, e = report["policies"][name], inequality.get(name, {}).get(slot)
        if e is None:
            continue
        top = f" ({e['max_share_publisher']})" if e["max_share_publisher"] else ""
        window_top = f" ({e['max_window_publisher']})" if e["max_window_publisher"] else ""
        cap = f"{pct(e['cap']['max_share'])} of {e['cap']['window']:,}" if e["cap"] else "–"
        lines.append(
            f"| {name} | {_fmt(p['mean_expected_reward'])} | {_fmt(p['pct_of_oracle'], 1)} | {_fmt(e['gini'], 3)} | "
            f"{pct(e['max_share'])}{top} | {pct(e['max_window_share'])}{window_top} | {cap} |"
        )
    return lines


def launch_table(report: dict[str, Any]) -> list[str]:
    """The table *Launches*: per launched item, in the page's first slot, how fast each arm found or dropped it."""
    entries = report.get("launches") or []
    slots = report["config"]["slots"]
    if not entries or not slots:
        return []
    slot = slots[0]
    lines = [
        "",
        "## Launches",
        "",
        f"Slot `{slot}`. Share: of the slot's decisions after the launch. *Found*: pages from the launch until "
        f"a bucket in which the policy showed a good launch at least {FOUND_SHARE:.0%} as often as the oracle; "
        f"*dropped*: until a bucket in which it showed a bad launch (the oracle gives it under {BAD_LAUNCH:.0%}) "
        f"to under {BAD_LAUNCH:.0%} of the slot.",
        "",
        "| item | launched (h) | verdict | oracle share | policy | share | found after | dropped after |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for entry in entries:
        e = entry["slots"][slot]
        for name in report["order"]:
            a = e["arms"].get(name)
            if a is None or name == "oracle":
                continue
            share = "–" if a["share_after_launch"] is None else f"{100 * a['share_after_launch']:.1f}%"
            found = "–" if a["found_after_pages"] is None else f"{a['found_after_pages']:,}"
            dropped = "–" if a["dropped_after_pages"] is None else f"{a['dropped_after_pages']:,}"
            lines.append(
                f"| {entry['item']} | {_fmt(entry['at_hours'], 1)} | {e['verdict']} | "
                f"{100 * (e['oracle_share'] or 0):.1f}% | {name} | {share} | "
                f"{found if e['verdict'] == 'good' else '·'} | {dropped if e['verdict'] == 'bad' else '·'} |"
            )
    return lines


# --------------------------------------------------------------------------- plots


def write_plots(report: dict[str, Any], out: Path) -> list[str]:
    """Write the PNGs; matplotlib is imported here only (``pip install storefront-bandit[plot]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = report["timeline"]["bucket_start_hours"]
    slots = report["config"]["slots"]
    series = report["timeline"]["policies"]
    order = report["order"]
    drift = report["drift"]
    written = []

    def mark_drift(ax: Any) -> None:
        for d in drift:
            ax.axvline(d["at_hours"], color="grey", linestyle=":", linewidth=1)

    def nan(values: list[float | None]) -> list[float]:
        return [np.nan if v is None else v for v in values]

    colour = {name: f"C{k}" for k, name in enumerate(order)}  # one colour per policy in every plot
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in order:
        ax1.plot(hours, series[name]["cumulative_expected_reward"], label=name, color=colour[name])
        if "cumulative_regret" in series[name] and name != "oracle":
            ax2.plot(hours, series[name]["cumulative_regret"], label=name, color=colour[name])
    ax1.set(title="Cumulative expected reward", xlabel="simulated hours", ylabel="reward")
    ax2.set(title="Cumulative regret against the oracle", xlabel="simulated hours", ylabel="regret")
    for ax in (ax1, ax2):
        mark_drift(ax)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cumulative.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    written.append("cumulative.png")

    fig, axes = plt.subplots(1, len(slots), figsize=(4.5 * len(slots), 4), squeeze=False)
    for ax, slot in zip(axes[0], slots, strict=True):
        for name in order:
            rate = nan(series[name]["slots"][slot]["reward_per_decision"])
            ax.plot(hours, rate, label=name, linewidth=1, color=colour[name])
        mark_drift(ax)
        ax.set(title=f"{slot}: reward per decision", xlabel="simulated hours")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reward_rate.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    written.append("reward_rate.png")

    main = "live" if "live" in series else "config" if "config" in series else order[0]
    fig, axes = plt.subplots(1, len(slots), figsize=(4.5 * len(slots), 3.5), squeeze=False)
    for ax, slot in zip(axes[0], slots, strict=True):
        shares = series[main]["slots"][slot]["tier_share"]
        if shares:
            tiers = sorted(shares)
            ax.stackplot(hours, *[nan(shares[t]) for t in tiers], labels=tiers)
            ax.legend(fontsize=8, loc="lower left")
        for entry in report.get("ladder", {}).get(main, []):
            if entry["slot"] == slot and entry["transition"] in ("canary", "ramp", "promoted", "rollback", "fallback"):
                ax.axvline(entry["at_hours"], color="black", linewidth=0.8, linestyle=":")
                ax.text(entry["at_hours"], 1.01, entry["transition"], fontsize=6, rotation=90, va="bottom")
        ax.set(title=f"{slot}: tier share ({main})", xlabel="simulated hours", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out / "tiers.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    written.append("tiers.png")

    fig, axes = plt.subplots(1, len(slots), figsize=(4.5 * len(slots), 4), squeeze=False)
    for ax, slot in zip(axes[0], slots, strict=True):
        shares = report["exposure"].get(main, {}).get(slot, {})
        top = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        ax.barh([p for p, _ in top][::-1], [v for _, v in top][::-1])
        ax.set(title=f"{slot}: publisher exposure ({main})", xlabel="share of decisions")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "exposure.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    written.append("exposure.png")
    return written


def write_report(result: SimulationResult, out: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and the PNGs into ``out``; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    (out / "report.json").write_text(report_json(report), encoding="utf-8")
    written: list[str] = []
    note = ""
    if plots:
        try:
            written = write_plots(report, out)
        except ImportError:
            note = "matplotlib is not installed, so no plots were drawn (pip install 'storefront-bandit[plot]')."
    else:
        note = "Plots were not requested."
    (out / "report.md").write_text(report_markdown(report, written, note), encoding="utf-8")
    return report
