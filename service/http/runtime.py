"""What a worker serves from: the runtime derived from one config, and the holder that reloads it.

The config file is re-read when it changes on disk (checked at most every two
seconds, on a request).  A file that fails validation is refused: the error is
logged with file, line and field, counted in
``storefront_config_reloads_total{result="refused"}``, and the running config
stays in force.

Each slot's serving policy follows its escalation state in Redis: the
holder's :class:`~service.http.ladders.LadderWatcher` checks the ladder
version at most once a second and rebuilds the page filler when it moved (see
:mod:`service.http.ladders`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bandit.coldstart import ColdStart
from bandit.config import ConfigError, StoreConfig, load_config
from bandit.escalation.state import SlotState
from bandit.exposure import ExposureTracker
from bandit.page import PageFiller
from bandit.policies.base import Decision, Policy
from service import metrics
from service.audit import prepare_counters
from service.http.ladders import LadderWatcher, live_tier

log = logging.getLogger("storefront")


class DecisionMetrics:
    """Per-decision metrics with their labelled children looked up once per config (the rank path is hot).

    For each served decision: the decision counter, exploration actually served
    (an item other than the policy's most likely one), the smallest candidate
    probability beside the floor the slot's exploration promises, and the
    served item's publisher (bounded: see :data:`service.metrics.PUBLISHER_LABELS`).
    """

    def __init__(self, config: StoreConfig, policies: Mapping[str, Policy]):
        publishers: dict[str, str] = {}
        for item in config.catalog.items:
            if item.publisher not in publishers and len(publishers) < metrics.PUBLISHER_LABELS:
                publishers[item.publisher] = item.publisher
        self._publisher = {item.id: publishers.get(item.publisher, "other") for item in config.catalog.items}
        self._floor = {name: policy.floor for name, policy in policies.items()}
        for slot in config.slots:
            if slot.exposure is not None:
                metrics.EXPOSURE_CAP.labels(slot.name).set(slot.exposure.max_share)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._last: dict[tuple[str, int], float] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def decision(self, decision: Decision) -> None:
        slot, tier, pmf = decision.slot, decision.tier, decision.pmf
        count = metrics.BUFFER.inc
        count(self._child(metrics.DECISIONS, slot, tier))
        count(self._child(metrics.PUBLISHER_IMPRESSIONS, slot, self._publisher.get(decision.item, "other")))
        if not pmf:
            return
        if decision.propensity < max(pmf):
            count(self._child(metrics.EXPLORED, slot))
        # Gauges are written only when they change (a rules slot repeats the same few values).
        low = min(pmf)
        if self._last.get((slot, 0)) != low:
            self._last[slot, 0] = low
            self._child(metrics.PROPENSITY_MIN, slot).set(low)
        floor = self._floor.get(slot)
        if floor is not None:
            value = floor(len(pmf))
            if self._last.get((slot, 1)) != value:
                self._last[slot, 1] = value
                self._child(metrics.PROPENSITY_FLOOR, slot).set(value)


@dataclass
class Runtime:
    """What a worker needs to answer requests, derived once from one config."""

    config: StoreConfig
    filler: PageFiller
    states: dict[str, SlotState] = field(default_factory=dict)  # ladder state per slot that has one
    slot_names: frozenset[str] = field(init=False)
    item_ids: frozenset[str] = field(init=False)
    event_types: frozenset[str] = field(init=False)
    observe: DecisionMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.slot_names = frozenset(self.config.slot_names)
        self.item_ids = frozenset(self.config.catalog.ids)
        self.event_types = frozenset(self.config.reward.events)
        self.observe = DecisionMetrics(self.config, self.filler.policies)

    @classmethod
    def build(
        cls,
        config: StoreConfig,
        policies: dict[str, Policy] | None = None,
        states: dict[str, SlotState] | None = None,
        exposure: ExposureTracker | None = None,
        coldstart: ColdStart | None = None,
    ) -> Runtime:
        """``exposure``, ``coldstart``: the previous runtime's windows and new items, kept across a reload."""
        return cls(config, PageFiller(config, policies, exposure, coldstart), dict(states or {}))

    def tiers(self) -> dict[str, str]:
        """The live tier of every slot (its ladder's incumbent, else the configured tier)."""
        return {slot.name: live_tier(slot, self.states.get(slot.name)) for slot in self.config.slots}


class ConfigHolder:
    """Holds the runtime for the current config and reloads it when the file or the ladder states change."""

    def __init__(self, path: str | os.PathLike[str], check_every: float = 2.0):
        self.path = Path(path)
        self.check_every = check_every
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self.runtime = Runtime.build(load_config(self.path))
        self._next_check = time.monotonic() + check_every
        self.ladders: LadderWatcher | None = None
        self._publish(None, self.runtime.config)

    def watch_ladders(self, watcher: LadderWatcher) -> None:
        """Serve each slot as its saved ladder state says, checking for new states on requests."""
        self.ladders = watcher
        self.refresh_ladders(force=True)

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def current(self) -> Runtime:
        now = time.monotonic()
        if now >= self._next_check:
            self._maybe_reload()
        if self.ladders is not None and now >= self.ladders.next_check:
            self.refresh_ladders()
        return self.runtime

    def refresh_ladders(self, force: bool = False) -> None:
        """Rebuild the runtime when the ladder states changed (one GET otherwise; never raises for Redis)."""
        if self.ladders is None:
            return
        with self._lock:
            if not force and time.monotonic() < self.ladders.next_check:
                return  # another thread just checked
            runtime = self.runtime
            result = self.ladders.refresh(runtime.config, runtime.filler.policies, force)
            if result is None:
                return
            policies, states = result
            filler = runtime.filler
            self.runtime = Runtime.build(runtime.config, policies, states, filler.exposure, filler.coldstart)
            self._publish_tiers(runtime.tiers(), self.runtime.tiers())

    def _maybe_reload(self) -> None:
        with self._lock:
            self._next_check = time.monotonic() + self.check_every
            stamp = self._file_stamp()
            if stamp is None or stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                config = load_config(self.path)
            except ConfigError as exc:
                metrics.CONFIG_RELOADS.labels("refused").inc()
                log.error("config change refused; still serving version %s:\n%s", self.runtime.config.version, exc)
                return
            if config.version == self.runtime.config.version:
                return
            old = self.runtime.config
            old_tiers = self.runtime.tiers()
            exposure, coldstart = self.runtime.filler.exposure, self.runtime.filler.coldstart
            self.runtime = Runtime.build(config, exposure=exposure, coldstart=coldstart)
            if self.ladders is not None:  # the states again, validated against the new config
                result = self.ladders.refresh(config, {}, force=True)
                if result is not None:
                    self.runtime = Runtime.build(config, *result, exposure, coldstart)
            metrics.CONFIG_RELOADS.labels("applied").inc()
            self._publish(old, config, old_tiers, self.runtime.tiers())
            log.info("config reloaded: version %s → %s", old.version, config.version)

    @classmethod
    def _publish(
        cls, old: StoreConfig | None, new: StoreConfig, old_tiers: dict[str, str] | None = None,
        new_tiers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        if old is not None:
            metrics.CONFIG_INFO.labels(old.name, old.version).set(0)
        metrics.CONFIG_INFO.labels(new.name, new.version).set(1)
        prepare_counters(new.slot_names)
        before = old_tiers if old_tiers is not None else {s.name: s.tier for s in old.slots} if old else {}
        cls._publish_tiers(before, new_tiers if new_tiers is not None else {s.name: s.tier for s in new.slots})

    @staticmethod
    def _publish_tiers(old: dict[str, str], new: dict[str, str]) -> None:
        for slot, tier in old.items():
            if new.get(slot) != tier:
                metrics.SLOT_TIER.labels(slot, tier).set(0)
        for slot, tier in new.items():
            metrics.SLOT_TIER.labels(slot, tier).set(1)
