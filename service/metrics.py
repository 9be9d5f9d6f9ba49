"""Every Prometheus metric the service and the learner export, declared in one place.

Under gunicorn the workers run in prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported; see
``service/http/gunicorn_conf.py``); the learner started by ``storefront serve``
writes into the same folder, so one scrape of ``/metrics`` shows both.

Labels come from small fixed sets: slot names and tiers from the config,
event types from ``reward.events``, outcomes and error codes from this code,
publishers from the catalog (at most ``PUBLISHER_LABELS`` of them by name, in
catalog order; any further publisher is counted as ``other``, so a catalog of
thousands of publishers still makes at most that many series per slot).
Never an item id, a user id or an event id.

How each type behaves across processes (prometheus-client multiprocess mode):

- Counters, the histogram and the summary are summed over every process file,
  dead processes included, so a worker that gunicorn respawns loses nothing.
  The summary has no quantiles (they cannot be merged); it exports _count and _sum.
- Gauges set by the API workers (tier, config info) are ``livemax``: 1 while
  any live worker serves that value; gunicorn's ``child_exit`` drops a dead
  worker's values (``mark_process_dead``).
- Gauges set by the learner are ``mostrecent``: the last value written wins.
  Nothing marks a dead learner (``storefront serve`` restarts it), so a ``live``
  or ``max`` mode would keep a crashed learner's value forever; and a process
  that never sets them (an API worker, or ``serve --no-learner``) exports
  nothing rather than a misleading 0.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
    multiprocess,
)

from bandit.escalation.state import TRANSITIONS

DECISIONS = Counter("storefront_decisions_total", "Slot decisions served, by slot and serving tier.", ["slot", "tier"])
UNFILLED = Counter(
    "storefront_unfilled_slots_total", "Requested slots left empty because no candidate was eligible.", ["slot"]
)
REWARDS = Counter(
    "storefront_rewards_total",
    "Rewards accepted inside the window, by slot, tier and event type ('reward' for explicit values).",
    ["slot", "tier", "event"],
)
REWARD_POSTS = Counter(
    "storefront_reward_posts_total",
    "Reward posts by outcome: accepted, duplicate, late, unknown, invalid, error (storage unavailable).",
    ["outcome"],
)
JOIN_OUTCOMES = Counter(
    "storefront_join_outcomes_total",
    "What became of slot decisions and rewards: joined (with a reward), defaulted (no reward in the window), "
    "late (reward after the window), unknown (reward for an event or slot never served), inactive (ranked with "
    "deferred activation and never activated: logged, not learned from).",
    ["outcome"],
)
JOINED_REWARD = Summary(
    "storefront_joined_reward",
    "Rewards of slot decisions joined after their window closed (count and sum; the mean is live reward). "
    "Negative rewards make _sum go down: divide raw _sum by _count, rate() would see a reset.",
    ["slot", "tier"],
)
JOINED_DECISIONS = Counter(
    "storefront_joined_decisions_total",
    "Slot decisions joined after their window closed, by slot and the tier that served them: with "
    "storefront_joined_reward_gain_total and _loss_total, the rate-friendly reward per decision.",
    ["slot", "tier"],
)
JOINED_GAIN = Counter(
    "storefront_joined_reward_gain_total",
    "Sum of the positive rewards of joined slot decisions (a counter: rate() works).",
    ["slot", "tier"],
)
JOINED_LOSS = Counter(
    "storefront_joined_reward_loss_total",
    "Sum of the absolute values of the negative rewards of joined slot decisions (reward = gain − loss).",
    ["slot", "tier"],
)
REVENUE = Counter(
    "storefront_revenue_total",
    "Revenue reported with accepted purchase events, by slot and the tier that served the decision.",
    ["slot", "tier"],
)
EXPLORED = Counter(
    "storefront_explored_decisions_total",
    "Slot decisions that served an item other than the serving policy's most likely one (exploration actually "
    "served; divide by storefront_decisions_total).",
    ["slot"],
)
PROPENSITY_MIN = Gauge(
    "storefront_served_propensity_min",
    "Smallest probability any eligible candidate had in the last decision of each slot (minimum over live "
    "workers): the exploration floor holding.",
    ["slot"],
    multiprocess_mode="livemin",
)
PROPENSITY_FLOOR = Gauge(
    "storefront_exploration_floor",
    "The per-candidate probability the slot's configured exploration promises in its last decision "
    "(exploration / candidates; the gradient tier's min_exploration / candidates).",
    ["slot"],
    multiprocess_mode="livemin",
)
PUBLISHER_IMPRESSIONS = Counter(
    "storefront_publisher_impressions_total",
    "Slot decisions by the publisher of the served item; publishers beyond the first "
    "PUBLISHER_LABELS of the catalog (in catalog order) are counted as 'other'.",
    ["slot", "publisher"],
)
EXPOSURE_CAP = Gauge(
    "storefront_exposure_cap_share",
    "The configured largest share of a slot's impressions one publisher may take (slots[].exposure.max_share).",
    ["slot"],
    multiprocess_mode="livemax",
)
RANK_LATENCY = Histogram(
    "storefront_rank_latency_seconds",
    "Time to answer POST /v1/rank inside the worker, from parsed request to serialised response.",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
RESPONSES = Counter(
    "storefront_http_responses_total",
    "HTTP responses by endpoint (the view's name, 'unmatched' for unknown paths) and status code.",
    ["endpoint", "status"],
)
ERRORS = Counter("storefront_http_errors_total", "Error responses by endpoint and error code.", ["endpoint", "code"])
PERSONALIZER_IGNORED = Counter(
    "storefront_personalizer_ignored_features_total",
    "Features of Personalizer-API requests that name no declared field: contextFeatures no context field, an "
    "ad-hoc action's features no catalog feature (ignored; the answer's X-Storefront-Ignored-Features header names "
    "them).",
)
PERSONALIZER_ADHOC = Counter(
    "storefront_personalizer_adhoc_actions_total",
    "Actions of Personalizer-API ranks that are not catalog items, ranked as ad-hoc items with the request's "
    "features (logged with them; not learned from: add them to catalog.items to have them learned).",
)
ACTIVATIONS = Counter(
    "storefront_activations_total",
    "Slot decisions ranked with deferred activation (the Personalizer API) and then activated, by slot.",
    ["slot"],
)
AUTH_REFUSED = Counter(
    "storefront_auth_refused_total",
    "Requests refused for their key, by action (rank, reward, slots, admin) and reason: missing, wrong, forbidden "
    "(the key's role may not), secret_in_url (a server key sent as ?key=).",
    ["action", "reason"],
)
RATE_LIMITED = Counter(
    "storefront_rate_limited_total", "Requests answered 429 because their key was over its limit, by key name.", ["key"]
)
STORAGE_ERRORS = Counter(
    "storefront_storage_errors_total",
    "Storage operations that failed (the rules tier keeps serving; the decision is not logged).",
    ["operation"],
)
DECISIONS_SUBMITTED = Counter(
    "storefront_decision_log_submitted_total",
    "Ranked pages handed to the worker's decision writer (write-behind). Over dead workers, submitted minus "
    "written minus dropped is what a killed worker lost (at most one flush interval).",
)
DECISIONS_WRITTEN = Counter(
    "storefront_decision_log_written_total",
    "Ranked pages the decision writer stored: to Redis, or to the local spool while Redis was away.",
    ["to"],
)
DECISIONS_DROPPED = Counter(
    "storefront_decision_log_dropped_total",
    "Ranked pages the decision writer could not keep (spool full, or no spool configured), served unlogged.",
    ["reason"],
)
REWARDS_QUEUED = Counter(
    "storefront_rewards_queued_total",
    "Rewards answered 202 and queued: their decision not in Redis yet (decision_pending), or Redis away "
    "(storage_away, spooled).",
    ["reason"],
)
REWARDS_REPLAYED = Counter(
    "storefront_rewards_replayed_total",
    "Queued rewards stored later, by what the storage answered (accepted, duplicate, late, unknown).",
    ["outcome"],
)
REWARDS_DROPPED = Counter(
    "storefront_rewards_dropped_total",
    "Rewards that could not be kept: spool full, no spool, or their decision never logged (killed worker).",
    ["reason"],
)
SPOOL_BYTES = Gauge(
    "storefront_spool_bytes",
    "Bytes waiting in the workers' spools for Redis to come back (sum over live workers).",
    multiprocess_mode="livesum",
)
STORAGE_DEGRADED = Gauge(
    "storefront_storage_degraded",
    "1 while a worker cannot reach Redis and spools its writes (maximum over live workers).",
    multiprocess_mode="livemax",
)
SLOT_TIER = Gauge(
    "storefront_slot_tier",
    "1 for the tier currently serving each slot, 0 for the others.",
    ["slot", "tier"],
    multiprocess_mode="livemax",
)
CONFIG_INFO = Gauge(
    "storefront_config_info",
    "1 for the config version in force (while a live worker serves it), 0 for one replaced by a reload.",
    ["store", "version"],
    multiprocess_mode="livemax",
)
CONFIG_RELOADS = Counter("storefront_config_reloads_total", "Config reloads by result: applied or refused.", ["result"])
LEARNER_LAG = Gauge(
    "storefront_learner_due_events",
    "Events whose reward window has closed and that the learner has not joined yet.",
    multiprocess_mode="mostrecent",
)
LEARNER_LAG_SECONDS = Gauge(
    "storefront_learner_lag_seconds",
    "How long past its reward window (and the joiner's grace) the oldest unjoined decision is; 0 while the "
    "learner keeps up.",
    multiprocess_mode="mostrecent",
)
JOIN_WAITING_WRITERS = Gauge(
    "storefront_join_waiting_writers",
    "API workers whose heartbeat stopped (away from Redis, or gone) and that the join waits for: pages whose "
    "window closed after their last beat are not joined until they beat again or the hold runs out.",
    multiprocess_mode="mostrecent",
)
LEARNER_LAST_RUN = Gauge(
    "storefront_learner_last_run_timestamp_seconds",
    "When the learner last finished a join pass (for a stalled-learner alert).",
    multiprocess_mode="mostrecent",
)

LADDER_TRANSITIONS = Counter(
    "storefront_ladder_transitions_total",
    f"Escalation transitions by slot and kind ({', '.join(TRANSITIONS)}), from the learner and the admin API.",
    ["slot", "transition"],
)
LADDER_STAGE = Gauge(
    "storefront_ladder_stage",
    "1 for each slot's current escalation stage (incumbent, canary, shadow, approval, ramp, promoted), 0 for the "
    "others.",
    ["slot", "stage"],
    multiprocess_mode="mostrecent",
)
SNAPSHOT_ERRORS = Counter(
    "storefront_snapshot_errors_total",
    "Ladder states or model snapshots a worker refused (corrupt, or not fitting the config); the slot kept serving "
    "its current policy.",
    ["slot"],
)
CHALLENGER_ERRORS = Counter(
    "storefront_challenger_errors_total",
    "Decisions where the challenger (shadow or ramp arm) failed and the slot's primary policy served alone.",
    ["slot"],
)

GATE_ESTIMATE = Gauge(
    "storefront_gate_estimate",
    "The gate's latest off-policy estimate of each slot's challenger and incumbent value per decision, with "
    "the bounds of its interval (bound: value, low, high).",
    ["slot", "policy", "bound"],
    multiprocess_mode="mostrecent",
)
GATE_LIFT = Gauge(
    "storefront_gate_relative_lift",
    "The gate's latest lift of the challenger over the incumbent, relative to the incumbent's value "
    "(bound: value, low, high); the gate passes when low ≥ min_lift.",
    ["slot", "bound"],
    multiprocess_mode="mostrecent",
)
GATE_ESS = Gauge(
    "storefront_gate_effective_sample_size",
    "Effective sample size of the challenger's importance weights at the gate's latest look.",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GATE_EVENTS = Gauge(
    "storefront_gate_events",
    "Logged shadow decisions the gate's latest look used.",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GATE_MAX_WEIGHT = Gauge(
    "storefront_gate_max_importance_weight",
    "Largest importance weight (challenger / logged probability) at the gate's latest look.",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GATE_UNSUPPORTED = Gauge(
    "storefront_gate_unsupported_mass",
    "Mean probability the challenger put on items the logging policy could not show, at the gate's latest look "
    "(the part off-policy evaluation cannot see).",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GATE_TIMESTAMP = Gauge(
    "storefront_gate_timestamp_seconds",
    "When the gate last looked at each slot's challenger (the learner's clock).",
    ["slot"],
    multiprocess_mode="mostrecent",
)
SNAPSHOT_TIMESTAMP = Gauge(
    "storefront_snapshot_timestamp_seconds",
    "When the snapshot each slot serves (role=incumbent) or shadows (role=challenger) was trained or published; "
    "time() minus it is the snapshot's age.  No series for rules, which have no snapshot.",
    ["slot", "role"],
    multiprocess_mode="mostrecent",
)
GRADIENT_LEARNED = Gauge(
    "storefront_gradient_learned_records",
    "Joined records each slot's gradient learner has learned from (it learns whoever serves).",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GRADIENT_STEPS = Gauge(
    "storefront_gradient_trust_region_steps",
    "Snapshots each slot's gradient learner published: warm start, then one per trust-region halt (KL limit).",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GRADIENT_KL = Gauge(
    "storefront_gradient_kl",
    "KL divergence between the deployed gradient snapshot and the learning policy on the last batch's contexts.",
    ["slot"],
    multiprocess_mode="mostrecent",
)
GRADIENT_NAN_HALTS = Gauge(
    "storefront_gradient_nan_halts",
    "Updates each gradient learner dropped because they produced a non-finite number (the last good weights "
    "stayed); any value above 0 deserves an alert.",
    ["slot"],
    multiprocess_mode="mostrecent",
)


# Publisher label values: at most this many publishers of the catalog get their own; the rest are 'other'.
PUBLISHER_LABELS = 50


def count_stored_reward(slot: str, tier: str, kind: str, payload: Any) -> None:
    """A reward stored for a decision (at once, or replayed from a queue): its count and a purchase's revenue."""
    if kind == "activate":  # a deferred page was shown: not a reward
        ACTIVATIONS.labels(slot).inc()
        return
    REWARDS.labels(slot, tier, kind).inc()
    if kind == "purchase" and isinstance(payload, dict) and payload.get("revenue"):
        REVENUE.labels(slot, tier).inc(payload["revenue"])


def observe_joined_reward(slot: str, tier: str, reward: float) -> None:
    """Count one joined slot decision and its reward (summary, and the rate-friendly gain/loss counters)."""
    JOINED_REWARD.labels(slot, tier).observe(reward)
    JOINED_DECISIONS.labels(slot, tier).inc()
    # Both series exist from the first join (gain − loss needs both sides), whatever the sign.
    JOINED_GAIN.labels(slot, tier).inc(max(reward, 0.0))
    JOINED_LOSS.labels(slot, tier).inc(max(-reward, 0.0))


class CounterBuffer:
    """Counter increments of the rank path, added up in memory and written by the worker's writer thread.

    In multiprocess mode each ``inc()`` writes a memory-mapped file under a
    lock; a rank makes a dozen of them.  With ``enabled`` (the write-behind's
    thread runs) they are summed here and written once per tick (every few
    milliseconds) and before every scrape of this worker; a SIGKILL loses at most
    one tick of them, like the pages themselves.
    """

    def __init__(self) -> None:
        self.enabled = False
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}

    def inc(self, child: Any, amount: float = 1.0) -> None:
        if not self.enabled:
            child.inc(amount)
            return
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        for child, amount in counts.items():
            child.inc(amount)


BUFFER = CounterBuffer()


def render() -> tuple[bytes, str]:
    """The exposition text of every metric, merged across processes when in multiprocess mode."""
    BUFFER.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
