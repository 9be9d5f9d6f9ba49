"""In-process dry runs: the config and its baselines on the same simulated shoppers.

Every *arm* (the config, the oracle, uniform random, the VW peer, extra
configs) fills the same pages: same shoppers at the same simulated times,
same event ids (so the same per-slot sampling numbers), and the same
common random numbers for "would this shopper click item X in slot P, then
add it to the cart, then buy it" and for the delays of those events.  Only
the policies differ, so differences between arms are differences between
policies, not luck.

Random streams (numpy ``PCG64`` from ``SeedSequence([seed, stream])``):
``1`` shopper contexts, ``2`` outcome draws per (page, item, slot),
``3`` event delays per (page, slot, event type).

The learner hook
----------------
An arm may carry a *learner*: any object with

- ``observe(records, now)`` — called with the joined records
  (:func:`bandit.eventlog.events.joined_records`) of every page whose reward window
  closed at or before simulated time ``now``;
- ``policies(now) -> {slot: Policy}`` — the serving policies from ``now`` on;
  slots left out are served by the config's own policies.  Called after
  every ``observe`` and at least every ``refresh_seconds`` of simulated time.

That is how learned tiers and escalation plug in without changing the runner:
they run on the simulated clock exactly as the learner process runs on the
wall clock.  The config arm uses :func:`bandit.escalation.learner.make_learner`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bandit.config import StoreConfig
from bandit.escalation.learner import make_learner
from bandit.eventlog.events import joined_records, logged_event, reward_value
from bandit.exposure import ExposureTracker
from bandit.page import PageFiller
from bandit.policies.base import Policy
from simulator.baselines import OraclePolicy, TruthView, UniformPolicy, VWPeer
from simulator.clock import Schedule, SimClock
from simulator.scenario import OUTCOMES, Scenario
from simulator.truth import Shoppers, Truth, TruthBatch

BATCH = 4096
BUCKETS = 100
REFRESH_SECONDS = 60.0
EXPOSURE_WINDOW = 2000  # impressions: the window a slot's largest publisher share is measured over when uncapped
PEERS = ("squarecb", "regcb", "epsilon")


class Learner(Protocol):
    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> Any: ...

    def policies(self, now: float) -> Mapping[str, Policy]: ...


# --------------------------------------------------------------------------- traffic


@dataclass
class Batch:
    """``n`` consecutive page views and everything the truth decided about them in advance."""

    first: int
    times: list[float]
    contexts: list[dict[str, Any]]
    event_ids: list[str]
    buckets: list[int]
    candidates: list[tuple[str, ...] | None]
    truth: TruthBatch
    level: np.ndarray  # (n, items, slots): 0 nothing, 1 click, 2 + add to cart, 3 + purchase
    delays: np.ndarray  # (n, slots, 3): seconds after the page view, per outcome

    @property
    def n(self) -> int:
        return len(self.times)


class Traffic:
    """The simulated shoppers of one run: identical for every arm and for HTTP mode."""

    def __init__(self, config: StoreConfig, scenario: Scenario, events: int, seed: int):
        if events < 1:
            raise ValueError("events must be ≥ 1")
        self.config = config
        self.scenario = scenario
        self.events = events
        self.seed = seed
        self.schedule = Schedule(scenario.start, scenario.pages_per_day, scenario.by_hour)
        self.truth = Truth(scenario, config, events, self.schedule.time_of)
        self.shoppers = Shoppers(scenario, config)
        self.changes = self.truth.availability_epochs()

    def event_id(self, n: int) -> str:
        return f"sim-{self.seed}-{n:08d}"

    def batches(self) -> Iterator[Batch]:
        streams = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, k]))) for k in (1, 2, 3)]
        context_rng, outcome_rng, delay_rng = streams
        truth = self.truth
        n_items, n_slots = len(truth.items), len(truth.slots)
        everything = None if not self.changes else truth.available(-np.inf)
        for first in range(0, self.events, BATCH):
            n = min(BATCH, self.events - first)
            times = self.schedule.times(first, n)
            contexts = self.shoppers.sample(context_rng, times)
            batch_truth = truth.evaluate(contexts, times)
            u = outcome_rng.random((3, n, n_items, n_slots))
            click = u[0] < batch_truth.p_click
            cart = click & (u[1] < batch_truth.p_cart)
            buy = cart & (u[2] < batch_truth.p_buy)
            level = click.astype(np.int8) + cart + buy
            delays = np.stack([truth.scenario.delays[o].sample(delay_rng, (n, n_slots)) for o in OUTCOMES], axis=-1)
            index = np.arange(first, first + n)
            if self.changes:
                stock = {}
                candidates: list[tuple[str, ...] | None] = []
                for t in times.tolist():
                    key = sum(1 for at in self.changes if at <= t)
                    if key not in stock:
                        stock[key] = truth.available(t)
                    candidates.append(stock[key])
            else:
                candidates = [everything] * n
            yield Batch(
                first=first,
                times=times.tolist(),
                contexts=contexts,
                event_ids=[self.event_id(k) for k in index.tolist()],
                buckets=(index * BUCKETS // self.events).tolist(),
                candidates=candidates,
                truth=batch_truth,
                level=level,
                delays=delays,
            )

    def outcome(self, batch: Batch, j: int, item: int, slot: int) -> tuple[dict[str, Any], dict[str, Any], int]:
        """What the shopper of page ``j`` does with ``item`` in ``slot``.

        Returns ``(posted, happened, late)``: the events that arrive inside
        the reward window (as :func:`bandit.eventlog.events.reward_value` wants them),
        every event that happened (with its delay in seconds under ``"delay"``)
        and how many of them arrive late.
        """
        level = int(batch.level[j, item, slot])
        if not level:
            return {}, {}, 0
        window = self.truth.window
        posted: dict[str, Any] = {}
        happened: dict[str, Any] = {}
        late = 0
        delays = batch.delays[j, slot].tolist()
        for k in range(level):
            name = OUTCOMES[k]
            payload = {"revenue": float(self.truth.revenue[item])} if name == "purchase" else {}
            happened[name] = {**payload, "delay": delays[k]}
            if delays[k] <= window:
                posted[name] = payload
            else:
                late += 1
        return posted, happened, late


# --------------------------------------------------------------------------- arms


@dataclass
class ArmStats:
    """What one arm did, accumulated per slot and per time bucket.

    With ``publishers`` (the publisher of each item) and ``windows`` (a window length per slot), it also
    keeps, per slot, the most impressions one publisher had in any ``windows[slot]`` consecutive impressions
    of the slot (``window_max``, by ``window_top``; -1 until the slot had a full window), in O(window)
    memory: the last window's publishers and their counts.
    """

    slots: int
    items: int
    expected: np.ndarray = field(init=False)  # (BUCKETS, slots)
    realised: np.ndarray = field(init=False)
    decisions: np.ndarray = field(init=False)
    late: np.ndarray = field(init=False)  # (slots,)
    unfilled: np.ndarray = field(init=False)
    shown: np.ndarray = field(init=False)  # (slots, items)
    tiers: dict[str, np.ndarray] = field(default_factory=dict)  # tier → (BUCKETS, slots)
    pages: int = 0
    publishers: tuple[str, ...] = ()  # per item; empty: no windowed exposure
    windows: tuple[int, ...] = ()  # per slot
    window_max: list[int] = field(init=False)  # per slot: most impressions of one publisher in a full window
    window_top: list[str | None] = field(init=False)  # per slot: that publisher (the first to reach it)
    watch: tuple[int, ...] = ()  # items whose impressions are counted per bucket (the scenario's launches)
    watched: np.ndarray = field(init=False)  # (BUCKETS, slots, len(watch))

    def __post_init__(self) -> None:
        self.expected = np.zeros((BUCKETS, self.slots))
        self.realised = np.zeros((BUCKETS, self.slots))
        self.decisions = np.zeros((BUCKETS, self.slots), dtype=np.int64)
        self.late = np.zeros(self.slots, dtype=np.int64)
        self.unfilled = np.zeros(self.slots, dtype=np.int64)
        self.shown = np.zeros((self.slots, self.items), dtype=np.int64)
        self.window_max = [-1] * self.slots
        self.watched = np.zeros((BUCKETS, self.slots, len(self.watch)), dtype=np.int64)
        self._watch_index = {item: k for k, item in enumerate(self.watch)}
        self.window_top = [None] * self.slots
        names = list(dict.fromkeys(self.publishers))
        self._publisher_of = [names.index(p) for p in self.publishers]  # item → publisher index
        self._publisher_names = names
        self._recent: list[deque[int]] = [deque() for _ in self.windows]
        self._window_counts = [[0] * len(names) for _ in self.windows]

    def record(self, bucket: int, slot: int, item: int, tier: str, expected: float, reward: float, late: int) -> None:
        self.expected[bucket, slot] += expected
        self.realised[bucket, slot] += reward
        self.decisions[bucket, slot] += 1
        self.late[slot] += late
        self.shown[slot, item] += 1
        counts = self.tiers.get(tier)
        if counts is None:
            counts = self.tiers[tier] = np.zeros((BUCKETS, self.slots), dtype=np.int64)
        counts[bucket, slot] += 1
        if self._watch_index:
            k = self._watch_index.get(item)
            if k is not None:
                self.watched[bucket, slot, k] += 1
        if self.windows:
            self._slide(slot, self._publisher_of[item])

    def _slide(self, slot: int, publisher: int) -> None:
        """One impression of ``publisher`` in ``slot``: O(1), except once when the first window fills up.

        The largest count in any full window is reached at the last impression of its publisher inside that
        window (or at the first full window), so checking the publisher just added is enough afterwards.
        """
        recent, counts, window = self._recent[slot], self._window_counts[slot], self.windows[slot]
        if len(recent) == window:
            counts[recent.popleft()] -= 1
        recent.append(publisher)
        counts[publisher] += 1
        if len(recent) < window:
            return
        if self.window_max[slot] < 0:  # the first full window: every publisher's count
            top = max(range(len(counts)), key=counts.__getitem__)
            self.window_max[slot], self.window_top[slot] = counts[top], self._publisher_names[top]
        elif counts[publisher] > self.window_max[slot]:
            self.window_max[slot], self.window_top[slot] = counts[publisher], self._publisher_names[publisher]


@dataclass
class Arm:
    """One policy set run over the traffic: a config's page filler, maybe with a learner."""

    name: str
    kind: str  # config | oracle | uniform | peer | live
    config: StoreConfig
    policies: Mapping[str, Policy] | None = None
    learner: Any = None
    view: TruthView | None = None
    description: str = ""


class _ArmRun:
    def __init__(self, arm: Arm, traffic: Traffic):
        self.arm = arm
        self.traffic = traffic
        truth = traffic.truth
        caps = {slot.name: slot.exposure for slot in (*traffic.config.slots, *arm.config.slots) if slot.exposure}
        publisher = {item.id: item.publisher for item in arm.config.catalog.items}
        self.stats = ArmStats(
            len(truth.slots),
            len(truth.items),
            publishers=tuple(publisher[i] for i in truth.items),
            windows=tuple(caps[s].window if s in caps else EXPOSURE_WINDOW for s in truth.slots),  # the arm's cap first
            watch=tuple(truth.item_index[item] for _, kind, item in truth.changes if kind == "launch"),
        )
        self.filler = PageFiller(arm.config, arm.policies, exposure=ExposureTracker(arm.config))  # one per arm
        self.base_policies = dict(self.filler.policies)
        self.clock = SimClock(traffic.scenario.start)
        self.pending: deque[tuple[float, dict[str, Any], dict[str, Any]]] = deque()
        self.next_refresh = -np.inf
        # a launch is the config reload that adds the item to the catalog: the filler's cold start sees it new
        self.launches = deque((at, item) for at, kind, item in truth.changes if kind == "launch")

    def _learn(self, now: float) -> None:
        learner = self.arm.learner
        records: list[dict[str, Any]] = []
        pending = self.pending
        reward_config = self.traffic.config.reward
        while pending and pending[0][0] <= now:
            closes, event, rewards = pending.popleft()
            records.extend(joined_records(event, rewards, reward_config, closes))
        self.clock.advance_to(now)
        if records:
            learner.observe(records, now)
        if records or now >= self.next_refresh:
            self.filler.policies = {**self.base_policies, **learner.policies(now)}
            self.next_refresh = now + REFRESH_SECONDS

    def run(self, batch: Batch) -> None:
        traffic = self.traffic
        truth = traffic.truth
        stats = self.stats
        record = stats.record
        outcome = traffic.outcome
        reward_config = traffic.config.reward
        slot_index, item_index = truth.slot_index, truth.item_index
        expected = batch.truth.expected
        fill = self.filler.fill
        view = self.arm.view
        learner = self.arm.learner
        window = truth.window
        version = self.arm.config.version
        launches = self.launches
        for j in range(batch.n):
            now = batch.times[j]
            while launches and launches[0][0] <= now:
                self.filler.coldstart.launch([launches.popleft()[1]])
            if learner is not None:
                self._learn(now)
                fill = self.filler.fill
            if view is not None:
                view.expected = expected[j]
            context = batch.contexts[j]
            page = fill(context, batch.event_ids[j], candidates=batch.candidates[j])
            bucket = batch.buckets[j]
            rewards: dict[str, Any] = {}
            for decision in page.decisions:
                s = slot_index[decision.slot]
                i = item_index[decision.item]
                posted, _, late = outcome(batch, j, i, s)
                record(bucket, s, i, decision.tier, float(expected[j, i, s]), reward_value(reward_config, posted), late)
                rewards[decision.slot] = posted
            for name in page.unfilled:
                stats.unfilled[slot_index[name]] += 1
            if learner is not None:
                event = logged_event(batch.event_ids[j], now, window, version, context, page.decisions)
                self.pending.append((event["window_close"], event, rewards))
        stats.pages += batch.n

    def finish(self) -> None:
        if self.arm.learner is not None and self.pending:
            self._learn(self.pending[-1][0])


class LogCollector:
    """A learner hook that only keeps the joined records: the simulator as a log generator (no policy ever changes)."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> None:
        self.records.extend(records)

    def policies(self, now: float) -> dict[str, Policy]:
        return {}


# --------------------------------------------------------------------------- runs


@dataclass
class SimulationResult:
    """Everything the report needs; see :mod:`simulator.report`."""

    config: StoreConfig
    scenario: Scenario
    events: int
    seed: int
    mode: str
    arms: list[Arm]
    stats: dict[str, ArmStats]
    bucket_hours: list[float]
    drift_hours: list[tuple[float, str, str]]
    notes: list[str] = field(default_factory=list)


def config_learner(config: StoreConfig, seed: int) -> Learner | None:
    """The learner the config asks for: None when every slot stays on its rules (escalation ``off``)."""
    return make_learner(config, seed)


def standard_arms(
    config: StoreConfig,
    seed: int,
    peers: Sequence[str] = ("squarecb",),
    extra_configs: Mapping[str, StoreConfig] | None = None,
    learner: Any = None,
    include_config: bool = True,
) -> list[Arm]:
    """Oracle, the config (with its learner, if any), extra configs, VW peers, uniform random."""
    view = TruthView()
    slots = config.slot_names
    order = range(len(slots))
    arms = [
        Arm(
            "oracle",
            "oracle",
            config,
            {s: OraclePolicy(s, k, _item_index(config), view) for s, k in zip(slots, order, strict=True)},
            view=view,
            description="knows the truth: best expected reward per slot, in page order",
        )
    ]
    if include_config:
        arms.append(
            Arm("config", "config", config, learner=learner or config_learner(config, seed), description=config.source)
        )
    for name, extra in (extra_configs or {}).items():
        arms.append(Arm(name, "config", extra, description=extra.source))
    for peer in peers:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r}; use one of: {', '.join(PEERS)}")
        arms.append(
            Arm(
                f"vw-{peer}", "peer", config, learner=VWPeer(config, peer, seed), description=f"cb_explore_adf --{peer}"
            )
        )
    arms.append(Arm("uniform", "uniform", config, {s: UniformPolicy(s) for s in slots}, description="uniform random"))
    return arms


def _item_index(config: StoreConfig) -> dict[str, int]:
    return {item: i for i, item in enumerate(config.catalog.ids)}


def simulate(
    config: StoreConfig,
    scenario: Scenario,
    events: int | None = None,
    seed: int = 0,
    peers: Sequence[str] = ("squarecb",),
    extra_configs: Mapping[str, StoreConfig] | None = None,
    learner: Any = None,
    arms: list[Arm] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run the config and its baselines over ``events`` simulated page views.

    Parameters
    ----------
    config, scenario
        The store config and a scenario validated against it.
    events
        Page views (default: the scenario's ``events``).
    seed
        Seeds every random stream; same seed and inputs give the same result, bit for bit.
    peers
        VW ``cb_explore_adf`` algorithms to run beside the config (``squarecb``, ``regcb``, ``epsilon``).
    extra_configs
        More configs (same catalog, slots and context) served by their rules on the same traffic, by arm name.
    learner
        The config arm's learner (see the module docstring); default: whatever the config asks for.
    arms
        Replace the standard arms entirely.
    progress
        Called with the number of pages done (summed over arms) after each block.
    """
    traffic = Traffic(config, scenario, events or scenario.events, seed)
    arms = arms if arms is not None else standard_arms(config, seed, peers, extra_configs, learner)
    for arm in arms:
        if arm.config.catalog.ids != config.catalog.ids or arm.config.slot_names != config.slot_names:
            raise ValueError(f"arm {arm.name!r}: its config must have the same catalog items and slots")
    runs = [_ArmRun(arm, traffic) for arm in arms]
    for batch in traffic.batches():
        for run in runs:
            run.run(batch)
            if progress is not None:
                progress(batch.n)
    for run in runs:
        run.finish()
        close = getattr(run.arm.learner, "close", None)
        if close is not None and run.arm.kind == "peer":
            close()
    return SimulationResult(
        config=config,
        scenario=scenario,
        events=traffic.events,
        seed=seed,
        mode="in-process",
        arms=arms,
        stats={run.arm.name: run.stats for run in runs},
        bucket_hours=bucket_hours(traffic),
        drift_hours=[((at - scenario.start) / 3600.0, kind, name) for at, kind, name in traffic.truth.drift_times],
    )


def bucket_hours(traffic: Traffic) -> list[float]:
    """Simulated hours since the start at which each time bucket begins."""
    firsts = [(b * traffic.events + BUCKETS - 1) // BUCKETS for b in range(BUCKETS)]
    return [(traffic.schedule.time_of(min(f, traffic.events - 1)) - traffic.scenario.start) / 3600.0 for f in firsts]
