"""The Flask application factory.

``create_app()`` reads everything from its arguments or the environment:

``STOREFRONT_CONFIG``   path of the store YAML (required)
``REDIS_URL``           Redis to log to, e.g. ``redis://host:6379/0`` or ``unix:///path/redis.sock``
``STOREFRONT_REDIS_PREFIX``  key prefix (default ``sb:<store name>:``)
``STOREFRONT_ADMIN_TOKEN``   bearer token of the admin API (unset: the admin API answers 404)

The config and the ladder states it serves are held by
:class:`~service.http.runtime.ConfigHolder` (reloaded when they change).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from service.clock import SYSTEM_CLOCK, Clock
from service.http import admin, api, errors, ops
from service.http.ladders import LadderWatcher
from service.http.runtime import ConfigHolder
from service.storage.protocols import Storage
from service.storage.redis_storage import RedisStorage


def create_app(
    config_path: str | os.PathLike[str] | None = None,
    redis_url: str | None = None,
    storage: Storage | None = None,
    settings: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> Flask:
    """Build the WSGI app.

    Parameters
    ----------
    config_path
        The store YAML; defaults to ``$STOREFRONT_CONFIG``.
    redis_url
        Defaults to ``$REDIS_URL``.  Ignored when ``storage`` is given.
    storage
        A ready :class:`~service.storage.protocols.Storage` (tests inject one).
    settings
        Extra Flask config values; ``LADDER_CHECK_SECONDS`` (default 1) is how often a worker
        looks for new ladder states, ``ADMIN_TOKEN`` overrides ``$STOREFRONT_ADMIN_TOKEN``.
    clock
        Where event times come from (default the wall clock; tests pass a :class:`~service.clock.ManualClock`).
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
    app.extensions["storefront.clock"] = clock or SYSTEM_CLOCK
    holder.watch_ladders(LadderWatcher(storage, float(app.config.get("LADDER_CHECK_SECONDS", 1.0))))

    errors.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(ops.bp)
    return app
