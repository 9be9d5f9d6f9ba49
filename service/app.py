"""The Flask application factory.

``create_app()`` reads everything from its arguments or the environment:

``STOREFRONT_CONFIG``   path of the store YAML (required)
``REDIS_URL``           Redis to log to, e.g. ``redis://host:6379/0`` or ``unix:///path/redis.sock``
``STOREFRONT_REDIS_PREFIX``  key prefix (default ``sb:<store name>:``)

The config file is re-read when it changes on disk (checked at most every two
seconds, on a request).  A file that fails validation is refused: the error is
logged with file, line and field, counted in
``storefront_config_reloads_total{result="refused"}``, and the running config
stays in force.
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
from bandit.page import PageFiller
from service import metrics
from service.storage import RedisStorage, Storage

log = logging.getLogger("storefront")


@dataclass
class Runtime:
    """What a worker needs to answer requests, derived once from one config."""

    config: StoreConfig
    filler: PageFiller
    slot_names: frozenset[str] = field(init=False)
    item_ids: frozenset[str] = field(init=False)
    event_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.slot_names = frozenset(self.config.slot_names)
        self.item_ids = frozenset(self.config.catalog.ids)
        self.event_types = frozenset(self.config.reward.events)

    @classmethod
    def build(cls, config: StoreConfig) -> Runtime:
        return cls(config, PageFiller(config))


class ConfigHolder:
    """Holds the runtime for the current config and reloads it when the file changes."""

    def __init__(self, path: str | os.PathLike[str], check_every: float = 2.0):
        self.path = Path(path)
        self.check_every = check_every
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self.runtime = Runtime.build(load_config(self.path))
        self._next_check = time.monotonic() + check_every
        self._publish(None, self.runtime.config)

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def current(self) -> Runtime:
        if time.monotonic() >= self._next_check:
            self._maybe_reload()
        return self.runtime

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
            self.runtime = Runtime.build(config)
            metrics.CONFIG_RELOADS.labels("applied").inc()
            self._publish(old, config)
            log.info("config reloaded: version %s → %s", old.version, config.version)

    @staticmethod
    def _publish(old: StoreConfig | None, new: StoreConfig) -> None:
        if old is not None:
            metrics.CONFIG_INFO.labels(old.name, old.version).set(0)
            for slot in old.slots:
                metrics.SLOT_TIER.labels(slot.name, slot.tier).set(0)
        metrics.CONFIG_INFO.labels(new.name, new.version).set(1)
        for slot in new.slots:
            metrics.SLOT_TIER.labels(slot.name, slot.tier).set(1)


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
        Extra Flask config values.
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
    app.extensions["storefront"] = holder
    app.extensions["storefront.storage"] = storage

    from service import api, errors, ops

    errors.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    return app
