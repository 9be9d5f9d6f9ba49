"""The Flask application factory.

``create_app()`` reads everything from its arguments or the environment:

``STOREFRONT_CONFIG``   path of the store YAML (required)
``REDIS_URL``           Redis to log to, e.g. ``redis://host:6379/0`` or ``unix:///path/redis.sock``
``STOREFRONT_REDIS_PREFIX``  key prefix (default ``sb:<store name>:``)
``STOREFRONT_ADMIN_TOKEN``   bearer token of the admin API (unset: the admin API answers 404)

The config file is re-read when it changes on disk (checked at most every two
seconds, on a request).  A file that fails validation is refused: the error is
logged with file, line and field, counted in
``storefront_config_reloads_total{result="refused"}``, and the running config
stays in force.

Each slot's serving policy follows its escalation state in Redis: the
holder's :class:`~service.ladders.LadderWatcher` checks the ladder version at
most once a second and rebuilds the page filler when it moved (see
:mod:`service.ladders`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from bandit.config import ConfigError, StoreConfig, load_config
from bandit.escalation.state import SlotState
from bandit.page import PageFiller
from bandit.policies.base import Policy
from service import metrics
from service.ladders import LadderWatcher, live_tier
from service.storage import RedisStorage, Storage

log = logging.getLogger("storefront")


@dataclass
class Runtime:
    """What a worker needs to answer requests, derived once from one config."""

    config: StoreConfig
    filler: PageFiller
    states: dict[str, SlotState] = field(default_factory=dict)  # ladder state per slot that has one
    slot_names: frozenset[str] = field(init=False)
    item_ids: frozenset[str] = field(init=False)
    event_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.slot_names = frozenset(self.config.slot_names)
        self.item_ids = frozenset(self.config.catalog.ids)
        self.event_types = frozenset(self.config.reward.events)

    @classmethod
    def build(
        cls, config: StoreConfig, policies: dict[str, Policy] | None = None, states: dict[str, SlotState] | None = None
    ) -> Runtime:
        return cls(config, PageFiller(config, policies), dict(states or {}))

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
            self.runtime = Runtime.build(runtime.config, policies, states)
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
            self.runtime = Runtime.build(config)
            if self.ladders is not None:  # the states again, validated against the new config
                result = self.ladders.refresh(config, {}, force=True)
                if result is not None:
                    self.runtime = Runtime.build(config, *result)
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
        before = old_tiers if old_tiers is not None else {s.name: s.tier for s in old.slots} if old else {}
        cls._publish_tiers(before, new_tiers if new_tiers is not None else {s.name: s.tier for s in new.slots})

    @staticmethod
    def _publish_tiers(old: dict[str, str], new: dict[str, str]) -> None:
        for slot, tier in old.items():
            if new.get(slot) != tier:
                metrics.SLOT_TIER.labels(slot, tier).set(0)
        for slot, tier in new.items():
            metrics.SLOT_TIER.labels(slot, tier).set(1)


def create_app(
    config_path: str | os.PathLike[str] | None = None,
    redis_url: str | None = None,
    storage: Storage | None = None,
    settings: dict[str, Any] | None = None,
) -> Flask:
    """Build the WSGI app.

    Parameters
    ----------
    config_path
        The store YAML; defaults to ``$STOREFRONT_CONFIG``.
    redis_url
        Defaults to ``$REDIS_URL``.  Ignored when ``storage`` is given.
    storage
        A ready :class:`~service.storage.Storage` (tests inject one).
    settings
        Extra Flask config values; ``LADDER_CHECK_SECONDS`` (default 1) is how often a worker
        looks for new ladder states, ``ADMIN_TOKEN`` overrides ``$STOREFRONT_ADMIN_TOKEN``.
    """
    config_path = config_path or os.environ.get("STOREFRONT_CONFIG")
    if not config_path:
        raise RuntimeError("no store config: pass config_path or set STOREFRONT_CONFIG")
    holder = ConfigHolder(config_path)
    config = holder.runtime.config
    if storage is None:
        redis_url = redis_url or os.environ.get("REDIS_URL")
        if not redis_url:
            raise RuntimeError("no Redis: set REDIS_URL (storefront serve starts an embedded one for you)")
        prefix = os.environ.get("STOREFRONT_REDIS_PREFIX") or f"sb:{config.name}:"
        storage = RedisStorage.from_url(redis_url, prefix)

    app = Flask("storefront", static_folder=None)  # no /static route: every route is in /openapi.json
    app.config["MAX_CONTENT_LENGTH"] = config.service.max_body_bytes
    app.config.update(settings or {})
    app.config.setdefault("ADMIN_TOKEN", os.environ.get("STOREFRONT_ADMIN_TOKEN") or None)
    app.extensions["storefront"] = holder
    app.extensions["storefront.storage"] = storage
    holder.watch_ladders(LadderWatcher(storage, float(app.config.get("LADDER_CHECK_SECONDS", 1.0))))

    from service import admin, api, errors, ops

    errors.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(ops.bp)
    return app
