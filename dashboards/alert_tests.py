"""Unit tests of the alert rules, in ``promtool test rules`` form (written to prometheus/alerts.test.yml).

Each case feeds synthetic series (promtool's expanding notation, one sample a
minute) and says which alerts must fire at an evaluation time, with which
labels; every alert has a case where it fires and one where it must not.
The annotations expected are the rule's own, with ``{{ $labels.x }}`` filled
in from the expected labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboards.panels import ALERTS


@dataclass(frozen=True)
class Case:
    name: str
    series: dict[str, str]
    alert: str
    eval_time: str
    fires: tuple[dict[str, str], ...] = ()  # the labels of each alert expected (besides severity)
    extra: dict[str, Any] = field(default_factory=dict)


_HERO = '{slot="hero", tier="rules"}'
CASES = (
    Case(
        "reward drops by 60% for an hour",
        {
            f"storefront_joined_decisions_total{_HERO}": "0+60x480",
            f"storefront_joined_reward_gain_total{_HERO}": "0+30x360 10800+12x120",
            f"storefront_joined_reward_loss_total{_HERO}": "0x480",
        },
        "StorefrontRewardDrop",
        "7h",
        ({"slot": "hero"},),
    ),
    Case(
        "steady reward",
        {
            f"storefront_joined_decisions_total{_HERO}": "0+60x480",
            f"storefront_joined_reward_gain_total{_HERO}": "0+30x480",
            f"storefront_joined_reward_loss_total{_HERO}": "0x480",
        },
        "StorefrontRewardDrop",
        "7h",
    ),
    Case(
        "learner stops after 10 minutes",
        {"storefront_learner_last_run_timestamp_seconds": "0+60x10 600x20"},
        "StorefrontLearnerStalled",
        "25m",
        ({},),
    ),
    Case(
        "learner runs every minute",
        {"storefront_learner_last_run_timestamp_seconds": "0+60x30"},
        "StorefrontLearnerStalled",
        "25m",
    ),
    Case(
        "learner 1000 s behind",
        {"storefront_learner_lag_seconds": "0x10 1000x30"},
        "StorefrontLearnerLagging",
        "25m",
        ({},),
    ),
    Case("learner keeps up", {"storefront_learner_lag_seconds": "0x10 60x30"}, "StorefrontLearnerLagging", "25m"),
    Case(
        "one reward in eleven late",
        {
            'storefront_join_outcomes_total{outcome="joined"}': "0+100x30",
            'storefront_join_outcomes_total{outcome="late"}': "0+10x30",
        },
        "StorefrontJoinMisses",
        "25m",
        ({},),
    ),
    Case(
        "no late reward ever",
        {'storefront_join_outcomes_total{outcome="joined"}': "0+100x30"},
        "StorefrontJoinMisses",
        "25m",
    ),
    Case(
        "a candidate at half the floor",
        {
            'storefront_served_propensity_min{slot="hero"}': "0.001x30",
            'storefront_exploration_floor{slot="hero"}': "0.002x30",
        },
        "StorefrontExplorationBelowFloor",
        "15m",
        ({"slot": "hero"},),
    ),
    Case(
        "the floor holds",
        {
            'storefront_served_propensity_min{slot="hero"}': "0.002x30",
            'storefront_exploration_floor{slot="hero"}': "0.002x30",
        },
        "StorefrontExplorationBelowFloor",
        "15m",
    ),
    Case(
        "Redis away for 5 minutes",
        {"storefront_storage_degraded": "0x5 1x10"},
        "StorefrontStorageDegraded",
        "10m",
        ({},),
    ),
    Case("a blip of 30 seconds", {"storefront_storage_degraded": "0x5 1 0x10"}, "StorefrontStorageDegraded", "10m"),
    Case(
        "one response in eleven a 500",
        {
            'storefront_http_responses_total{endpoint="rank", status="200"}': "0+600x20",
            'storefront_http_responses_total{endpoint="rank", status="500"}': "0+60x20",
        },
        "StorefrontServerErrors",
        "15m",
        ({},),
    ),
    Case(
        "only 4xx",
        {
            'storefront_http_responses_total{endpoint="rank", status="200"}': "0+600x20",
            'storefront_http_responses_total{endpoint="rank", status="400"}': "0+60x20",
        },
        "StorefrontServerErrors",
        "15m",
    ),
    Case(
        "p99 near 50 ms",
        {
            'storefront_rank_latency_seconds_bucket{le="0.01"}': "0+10x30",
            'storefront_rank_latency_seconds_bucket{le="0.05"}': "0+100x30",
            'storefront_rank_latency_seconds_bucket{le="+Inf"}': "0+100x30",
        },
        "StorefrontRankLatencyHigh",
        "20m",
        ({},),
    ),
    Case(
        "p99 under 10 ms",
        {
            'storefront_rank_latency_seconds_bucket{le="0.01"}': "0+100x30",
            'storefront_rank_latency_seconds_bucket{le="0.05"}': "0+100x30",
            'storefront_rank_latency_seconds_bucket{le="+Inf"}': "0+100x30",
        },
        "StorefrontRankLatencyHigh",
        "20m",
    ),
    Case(
        "a rollback at minute 11",
        {
            'storefront_ladder_transitions_total{slot="hero", transition="rollback"}': "0x10 1x20",
            'storefront_ladder_transitions_total{slot="hero", transition="promoted"}': "0x10 1x20",
        },
        "StorefrontRollback",
        "14m",
        ({"slot": "hero", "transition": "rollback"},),
    ),
    Case(
        "a promotion is no rollback",
        {'storefront_ladder_transitions_total{slot="hero", transition="promoted"}': "0x10 1x20"},
        "StorefrontRollback",
        "14m",
    ),
    Case(
        "a NaN halt",
        {'storefront_gradient_nan_halts{slot="hero"}': "0x10 1x20"},
        "StorefrontGradientNaN",
        "15m",
        ({"slot": "hero"},),
    ),
    Case("no NaN", {'storefront_gradient_nan_halts{slot="hero"}': "0x30"}, "StorefrontGradientNaN", "15m"),
)


def _fill(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{ $labels." + key + " }}", value)
    return template


def promtool_tests(rule_file: str) -> dict[str, Any]:
    """The whole ``promtool test rules`` file."""
    alerts = {a.name: a for a in ALERTS}
    tests = []
    for case in CASES:
        alert = alerts[case.alert]
        expected = [
            {
                "exp_labels": {**labels, "severity": alert.severity},
                "exp_annotations": {
                    "summary": _fill(alert.summary, labels),
                    "description": _fill(alert.description, labels),
                },
            }
            for labels in case.fires
        ]
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [{"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": expected}],
            }
        )
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
