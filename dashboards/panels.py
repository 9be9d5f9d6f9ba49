"""What the operator sees: every dashboard panel, annotation and alert rule, as plain data.

One source for three consumers: :mod:`dashboards.build` turns the dashboards
into Grafana JSON (with grafana-foundation-sdk) and the alerts into a
Prometheus rule file; ``storefront report --prometheus`` renders the
overview's key panels from the same queries; and the integration test runs
every query against a real Prometheus scraping a live service.

Queries use two dashboard variables, ``$slot`` and ``$tier`` (multi-value,
"All" by default, so they are regex-matched with ``=~``), and Grafana's
``$__rate_interval``.  :func:`substitute` fills them in for anything that
is not Grafana.

Every ratio has a denominator that exists as soon as the service serves, and
numerators that may have no series yet (no 5xx so far, no late reward) are
written ``(… or vector(0))`` or ``(… or denominator * 0)`` so a healthy
service shows 0 rather than "No data".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DATASOURCE_UID = "storefront-prometheus"
SLOT = 'slot=~"$slot"'
SLOT_TIER = 'slot=~"$slot", tier=~"$tier"'
RATE = "$__rate_interval"
CLICKS = SLOT + ', event="click"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: ``kind`` is a Grafana panel type (timeseries, stat, state-timeline)."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    report: bool = False  # drawn by `storefront report` too


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    title: str
    color: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    annotations: tuple[Annotation, ...] = ()
    variables: tuple[str, ...] = ("slot", "tier")
    tags: tuple[str, ...] = field(default=("storefront",))


@dataclass(frozen=True)
class Alert:
    """An alerting rule ``lhs op rhs`` held ``for`` a while; the test evaluates ``lhs`` and a non-numeric ``rhs``."""

    name: str
    lhs: str
    op: str
    rhs: str
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str


def reward_per_decision(labels: str, by: str, window: str) -> str:
    """Joined reward per joined decision: (gain − loss) / decisions, all counters so rate() is safe."""
    return (
        f"(sum by ({by}) (rate(storefront_joined_reward_gain_total{{{labels}}}[{window}]))"
        f" - sum by ({by}) (rate(storefront_joined_reward_loss_total{{{labels}}}[{window}])))"
        f" / sum by ({by}) (rate(storefront_joined_decisions_total{{{labels}}}[{window}]))"
    )


def _rate(metric: str, labels: str, by: str, window: str = RATE) -> str:
    return f"sum by ({by}) (rate({metric}{{{labels}}}[{window}]))"


OVERVIEW = Dashboard(
    uid="storefront-overview",
    title="Storefront overview",
    description="Is each slot earning? Reward, traffic, latency, errors, exploration and the ladder, per slot and "
    "tier.",
    panels=(
        Panel(
            "Reward per decision",
            "Mean joined reward per slot decision, by slot and the tier that served it (rewards are joined when the "
            "decision's reward window closes, so this trails live traffic by the window).",
            "short",
            (Query(reward_per_decision(SLOT_TIER, "slot, tier", RATE), "{{slot}} · {{tier}}"),),
            report=True,
        ),
        Panel(
            "Click-through rate",
            "Accepted click events per slot decision served.",
            "percentunit",
            (
                Query(
                    f"({_rate('storefront_rewards_total', CLICKS, 'slot')}"
                    f" or {_rate('storefront_decisions_total', SLOT, 'slot')} * 0)"
                    f" / {_rate('storefront_decisions_total', SLOT, 'slot')}",
                    "{{slot}}",
                ),
            ),
            report=True,
        ),
        Panel(
            "Revenue per minute",
            "Revenue reported with accepted purchase events, by slot.",
            "short",
            (Query(f"60 * {_rate('storefront_revenue_total', SLOT_TIER, 'slot')}", "{{slot}}"),),
            report=True,
        ),
        Panel(
            "Decisions per second",
            "Slot decisions served, by slot and serving tier (all API workers and replicas).",
            "ops",
            (Query(_rate("storefront_decisions_total", SLOT_TIER, "slot, tier"), "{{slot}} · {{tier}}"),),
            report=True,
        ),
        Panel(
            "Rank latency",
            "POST /v1/rank inside the worker, from parsed request to serialised response: p50 and p99.",
            "s",
            (
                Query(
                    f"histogram_quantile(0.5, sum by (le) (rate(storefront_rank_latency_seconds_bucket[{RATE}])))",
                    "p50",
                ),
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate(storefront_rank_latency_seconds_bucket[{RATE}])))",
                    "p99",
                ),
            ),
            report=True,
        ),
        Panel(
            "Errors by code",
            "Error responses per second by endpoint and error code (4xx: the caller's request; 5xx: ours), and the "
            "share of responses with a 5xx status.",
            "reqps",
            (
                Query(f"sum by (endpoint, code) (rate(storefront_http_errors_total[{RATE}]))", "{{endpoint}} {{code}}"),
                Query(
                    f'(sum(rate(storefront_http_responses_total{{status=~"5.."}}[{RATE}])) or vector(0))'
                    f" / sum(rate(storefront_http_responses_total[{RATE}]))",
                    "5xx share",
                ),
            ),
        ),
        Panel(
            "Exploration served",
            "Share of decisions that served an item other than the serving policy's most likely one.",
            "percentunit",
            (
                Query(
                    f"({_rate('storefront_explored_decisions_total', SLOT, 'slot')}"
                    f" or {_rate('storefront_decisions_total', SLOT, 'slot')} * 0)"
                    f" / {_rate('storefront_decisions_total', SLOT, 'slot')}",
                    "{{slot}}",
                ),
            ),
            min=0,
            report=True,
        ),
        Panel(
            "Exploration floor",
            "Smallest probability any candidate had in each slot's latest decision, beside the floor the slot's "
            "exploration promises (alert: below it).",
            "percentunit",
            (
                Query(f"min by (slot) (storefront_served_propensity_min{{{SLOT}}})", "{{slot}} smallest"),
                Query(f"max by (slot) (storefront_exploration_floor{{{SLOT}}})", "{{slot}} floor"),
            ),
            min=0,
        ),
        Panel(
            "Write path",
            "Workers spooling because Redis does not answer (alert: Redis away), bytes waiting in their spools, and "
            "pages served unlogged per second (spool full, or no spool).",
            "short",
            (
                Query("max(storefront_storage_degraded)", "degraded (1: spooling)"),
                Query("sum(storefront_spool_bytes)", "spool bytes"),
                Query(
                    f"sum(rate(storefront_decision_log_dropped_total[{RATE}])) or vector(0)",
                    "pages unlogged per second",
                ),
            ),
        ),
        Panel(
            "Tier per slot",
            "Which tier serves each slot (rules, tree, gradient, pin) over time.",
            "none",
            (Query(f"max by (slot, tier) (storefront_slot_tier{{{SLOT}}}) > 0", "{{slot}} · {{tier}}"),),
            kind="state-timeline",
        ),
        Panel(
            "Escalation stage",
            "Each slot's ladder stage: incumbent, canary, shadow, approval, ramp, promoted.",
            "none",
            (Query(f"max by (slot, stage) (storefront_ladder_stage{{{SLOT}}}) > 0", "{{slot}} · {{stage}}"),),
            kind="state-timeline",
        ),
    ),
    annotations=(
        Annotation(
            "Escalations",
            "sum by (slot, transition) (increase(storefront_ladder_transitions_total"
            '{transition=~"canary|trained|ramp|promoted"}[2m])) > 0',
            "{{slot}}: {{transition}}",
            "green",
        ),
        Annotation(
            "Rollbacks",
            "sum by (slot, transition) (increase(storefront_ladder_transitions_total"
            '{transition=~"rejected|rollback|fallback"}[2m])) > 0',
            "{{slot}}: {{transition}}",
            "red",
        ),
    ),
)

LEARNING = Dashboard(
    uid="storefront-learning",
    title="Storefront learning health",
    description="Is the learner healthy and is a challenger about to escalate? The gate's estimates and how far to "
    "trust them, joins, lag and snapshot ages.",
    panels=(
        Panel(
            "Gate: challenger vs incumbent",
            "The gate's latest off-policy estimate of the reward per decision of the challenger and the incumbent, "
            "with the bounds of the interval, on the decisions logged since the challenger was trained.",
            "short",
            (Query(f"storefront_gate_estimate{{{SLOT}}}", "{{slot}} {{policy}} {{bound}}"),),
        ),
        Panel(
            "Gate: relative lift",
            "The challenger's lift over the incumbent relative to the incumbent's value; the gate passes when the "
            "low bound is at least escalation.min_lift.",
            "percentunit",
            (Query(f"storefront_gate_relative_lift{{{SLOT}}}", "{{slot}} {{bound}}"),),
        ),
        Panel(
            "Gate: effective sample size",
            "Effective sample size of the challenger's importance weights, beside the decisions the gate used.",
            "short",
            (
                Query(f"storefront_gate_effective_sample_size{{{SLOT}}}", "{{slot}} ESS"),
                Query(f"storefront_gate_events{{{SLOT}}}", "{{slot}} decisions"),
            ),
        ),
        Panel(
            "Gate: largest weight and unsupported mass",
            "Largest importance weight (a few huge weights make an estimate fragile) and the challenger's "
            "probability on items the logging policy could not show (invisible to off-policy evaluation).",
            "short",
            (
                Query(f"storefront_gate_max_importance_weight{{{SLOT}}}", "{{slot}} max weight"),
                Query(f"storefront_gate_unsupported_mass{{{SLOT}}}", "{{slot}} unsupported"),
            ),
        ),
        Panel(
            "Join outcomes",
            "What became of decisions and rewards per second: joined (with a reward), defaulted (no reward in the "
            "window), late (reward after the window), unknown (reward for nothing served).",
            "ops",
            (Query(f"sum by (outcome) (rate(storefront_join_outcomes_total[{RATE}]))", "{{outcome}}"),),
            report=True,
        ),
        Panel(
            "Learner lag",
            "How long past its window (and the joiner's grace) the oldest unjoined decision is, and how long since "
            "the learner's last join pass.",
            "s",
            (
                Query("max(storefront_learner_lag_seconds)", "oldest unjoined, past its window"),
                Query("time() - max(storefront_learner_last_run_timestamp_seconds)", "since the last join pass"),
            ),
            report=True,
        ),
        Panel(
            "Decisions waiting to be joined",
            "Events whose window closed and that the learner has not joined yet, and the API workers whose heartbeat "
            "stopped (away from Redis, or gone) that the join waits for, so the rewards they spooled are joined.",
            "short",
            (
                Query("max(storefront_learner_due_events)", "due"),
                Query("max(storefront_join_waiting_writers)", "silent API workers the join waits for"),
            ),
        ),
        Panel(
            "Snapshot age",
            "Age of the snapshot each slot serves (incumbent) or shadows (challenger); rules have none.",
            "s",
            (Query(f"time() - storefront_snapshot_timestamp_seconds{{{SLOT}}}", "{{slot}} {{role}}"),),
        ),
        Panel(
            "Gradient: trust-region steps and KL",
            "Snapshots each gradient learner published (one per trust-region halt) and the KL divergence between "
            "the deployed snapshot and the learning policy.",
            "short",
            (
                Query(f"storefront_gradient_trust_region_steps{{{SLOT}}}", "{{slot}} steps"),
                Query(f"storefront_gradient_kl{{{SLOT}}}", "{{slot}} KL"),
            ),
        ),
        Panel(
            "Gradient: records learned and NaN halts",
            "Joined records each gradient learner learned from, and updates dropped for a non-finite number (alert).",
            "short",
            (
                Query(f"storefront_gradient_learned_records{{{SLOT}}}", "{{slot}} learned"),
                Query(f"storefront_gradient_nan_halts{{{SLOT}}}", "{{slot}} NaN halts"),
            ),
        ),
    ),
    annotations=OVERVIEW.annotations,
    variables=("slot",),
)

_IMPRESSIONS = "storefront_publisher_impressions_total"
PUBLISHERS = Dashboard(
    uid="storefront-publishers",
    title="Storefront publishers",
    description="Does every publisher get a fair share? Each publisher's share of a slot's impressions against the "
    "slot's exposure cap.",
    panels=(
        Panel(
            "Exposure share per publisher",
            "Each publisher's share of the slot's impressions, beside the slot's cap (slots[].exposure.max_share). "
            "The cap holds over its own sliding window of impressions; this is the share over the rate interval.",
            "percentunit",
            (
                Query(
                    f"{_rate(_IMPRESSIONS, SLOT, 'slot, publisher')} / ignoring (publisher) group_left "
                    f"{_rate(_IMPRESSIONS, SLOT, 'slot')}",
                    "{{slot}} · {{publisher}}",
                ),
                Query(f"max by (slot) (storefront_exposure_cap_share{{{SLOT}}})", "{{slot}} cap"),
            ),
            min=0,
            max=1,
            width=24,
            report=True,
        ),
        Panel(
            "Largest publisher share",
            "The largest publisher's share of each slot's impressions.",
            "percentunit",
            (
                Query(
                    f"max by (slot) ({_rate(_IMPRESSIONS, SLOT, 'slot, publisher')} / ignoring (publisher) "
                    f"group_left {_rate(_IMPRESSIONS, SLOT, 'slot')})",
                    "{{slot}}",
                ),
            ),
            min=0,
            max=1,
        ),
        Panel(
            "Impressions per second by publisher",
            "Slot decisions per second by the served item's publisher.",
            "ops",
            (Query(_rate(_IMPRESSIONS, SLOT, "slot, publisher"), "{{slot}} · {{publisher}}"),),
        ),
    ),
    variables=("slot",),
)

DASHBOARDS = (OVERVIEW, LEARNING, PUBLISHERS)

# --------------------------------------------------------------------------- alerts

RECORDINGS = (
    Recording("storefront:reward_per_decision:rate30m", reward_per_decision("", "slot", "30m")),
    Recording("storefront:reward_per_decision:rate6h", reward_per_decision("", "slot", "6h")),
)

ALERTS = (
    Alert(
        "StorefrontRewardDrop",
        "storefront:reward_per_decision:rate30m",
        "<",
        "0.8 * storefront:reward_per_decision:rate6h",
        "30m",
        "warning",
        "Slot {{ $labels.slot }} earns 20% less per decision than over the last 6 hours",
        "The reward per decision of the last 30 minutes is below 80% of the slot's 6-hour mean (which includes "
        "those 30 minutes, so a drop shows a little later than a clean baseline would). Check the overview: a "
        "rollback, a config change, a catalog or traffic change.",
    ),
    Alert(
        "StorefrontLearnerStalled",
        "time() - max(storefront_learner_last_run_timestamp_seconds)",
        ">",
        "300",
        "5m",
        "critical",
        "The learner has not finished a join pass for 5 minutes",
        "Rewards are not joined and no slot learns. Check the learner process, its log and its lease "
        "(storefront_learner_last_run_timestamp_seconds).",
    ),
    Alert(
        "StorefrontLearnerLagging",
        "max(storefront_learner_lag_seconds)",
        ">",
        "900",
        "10m",
        "warning",
        "The oldest unjoined decision is 15 minutes past its window",
        "The learner runs but cannot keep up: see the learning-health dashboard's learner lag and join outcomes.",
    ),
    Alert(
        "StorefrontJoinMisses",
        '(sum(rate(storefront_join_outcomes_total{outcome=~"late|unknown"}[10m])) or vector(0))'
        " / sum(rate(storefront_join_outcomes_total[10m]))",
        ">",
        "0.05",
        "10m",
        "warning",
        "More than 5% of joins are late or unknown rewards",
        "Rewards arrive after their window or for events never served: a store-side delay, a window too short, "
        "or ids not passed through.",
    ),
    Alert(
        "StorefrontExplorationBelowFloor",
        "min by (slot) (storefront_served_propensity_min)",
        "<",
        "0.99 * max by (slot) (storefront_exploration_floor)",
        "10m",
        "warning",
        "Slot {{ $labels.slot }} serves a candidate below its exploration floor",
        "A candidate's probability is below what the slot's exploration promises (an exposure cap that holds a "
        "publisher back does this on purpose); otherwise off-policy estimates lose support.",
    ),
    Alert(
        "StorefrontStorageDegraded",
        "max(storefront_storage_degraded)",
        ">",
        "0",
        "2m",
        "critical",
        "Redis does not answer: API workers are spooling their writes",
        "Pages and rewards are kept in the workers' spools and replayed when Redis answers; nothing is learned "
        "meanwhile, and a full spool serves pages unlogged. Check Redis, then storefront_spool_bytes.",
    ),
    Alert(
        "StorefrontServerErrors",
        '(sum(rate(storefront_http_responses_total{status=~"5.."}[5m])) or vector(0))'
        " / sum(rate(storefront_http_responses_total[5m]))",
        ">",
        "0.01",
        "5m",
        "critical",
        "More than 1% of responses are 5xx",
        "Server errors over the last 5 minutes: see the overview's errors panel and the service log.",
    ),
    Alert(
        "StorefrontRankLatencyHigh",
        "histogram_quantile(0.99, sum by (le) (rate(storefront_rank_latency_seconds_bucket[5m])))",
        ">",
        "0.025",
        "10m",
        "warning",
        "p99 rank latency over 25 ms",
        "p99 of POST /v1/rank inside the worker over the last 5 minutes; the store's page waits for it.",
    ),
    Alert(
        "StorefrontRollback",
        'sum by (slot, transition) (increase(storefront_ladder_transitions_total{transition=~"rollback|fallback"}'
        "[15m]))",
        ">",
        "0",
        "0m",
        "warning",
        "Slot {{ $labels.slot }} rolled back ({{ $labels.transition }})",
        "A learned tier broke the guardrail (rollback) or failed to serve (fallback); the slot serves the previous "
        "tier. The admin API's history says why.",
    ),
    Alert(
        "StorefrontGradientNaN",
        "max by (slot) (changes(storefront_gradient_nan_halts[30m]))",
        ">",
        "0",
        "0m",
        "warning",
        "Slot {{ $labels.slot }}: a gradient update produced a non-finite number",
        "The learner dropped the update and kept the last good snapshot; repeated halts mean a learning rate or "
        "reward scale too large.",
    ),
)

_VARIABLE = re.compile(r"\$(__rate_interval|slot|tier)\b")


def substitute(expr: str, slot: str = ".*", tier: str = ".*", rate_interval: str = "1m") -> str:
    """An expression with the dashboard's variables filled in (regexes for ``$slot`` and ``$tier``)."""
    values = {"__rate_interval": rate_interval, "slot": slot, "tier": tier}
    return _VARIABLE.sub(lambda m: values[m.group(1)], expr)
