"""The Flask application factory.

``create_app()`` reads everything from its arguments or the environment:

``STOREFRONT_CONFIG``   path of the store YAML (required)
``REDIS_URL``           Redis to log to, e.g. ``redis://host:6379/0`` or ``unix:///path/redis.sock``
``STOREFRONT_REDIS_PREFIX``  key prefix (default ``sb:<store name>:``)
``STOREFRONT_REDIS_CLUSTER``  1: ``REDIS_URL`` is a node of a Redis Cluster (keys hash-tagged, see
                             :mod:`service.storage.redis_storage`)
``STOREFRONT_REDIS_PARTITIONS``  partitions of the pending pages and the joined log (default 1; 16 on a cluster)
``STOREFRONT_API_KEYS_FILE``, ``STOREFRONT_API_KEYS``  the API keys (see :mod:`service.http.access`)
``STOREFRONT_ADMIN_TOKEN``   one more admin key (without any admin key the admin API answers 404)
``STOREFRONT_DEMO_KEY``      the browser key ``/demo`` uses (``storefront serve`` sets it to the one it made)
``STOREFRONT_ID_SECRET``, ``STOREFRONT_ID_SECRET_FILE``  the secret event ids are signed with (unset: a random one
                             kept in Redis, made by the first worker that starts)
``STOREFRONT_LOG_FLUSH_SECONDS``  how often the worker's decision writer flushes (default 0.005; 0: in the request)
``STOREFRONT_SPOOL_DIR``     where a worker spools writes while Redis is away (``storefront serve``: <data-dir>/spool;
                             unset: no spool, pages are served unlogged and rewards refused with 503 meanwhile)
``STOREFRONT_SPOOL_MAX_BYTES``  size bound of each worker's spool (default 256 MiB)
``STOREFRONT_REPLAY_GRACE_SECONDS``  a replayed page waits at least this long for the join (default 60), so the
                             rewards other workers spooled for it are replayed first

The config and the ladder states it serves are held by
:class:`~service.http.runtime.ConfigHolder` (reloaded when they change).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response

from service.clock import SYSTEM_CLOCK, Clock
from service.http import admin, api, demo, errors, ops, personalizer
from service.http.access import Keys, cors, load_keys
from service.http.ids import IdSigner
from service.http.ladders import LadderWatcher
from service.http.runtime import ConfigHolder
from service.storage import STORAGE_ERRORS
from service.storage.protocols import Storage
from service.storage.redis_storage import RedisStorage
from service.storage.writebehind import WRITERS, Spool, WriteBehind


def _writer(storage: Storage, settings: Mapping[str, Any], injected: bool) -> WriteBehind:
    """The worker's write-behind: from the settings, else the environment; synchronous for an injected storage."""

    def setting(key: str, env: str, default: Any) -> Any:
        if key in settings:
            return settings[key]
        if not injected and os.environ.get(env):
            return os.environ[env]
        return default

    interval = float(setting("LOG_FLUSH_SECONDS", "STOREFRONT_LOG_FLUSH_SECONDS", 0.0 if injected else 0.005))
    spool_dir = setting("SPOOL_DIR", "STOREFRONT_SPOOL_DIR", None)
    max_bytes = int(setting("SPOOL_MAX_BYTES", "STOREFRONT_SPOOL_MAX_BYTES", 256 << 20))
    grace = float(setting("REPLAY_GRACE_SECONDS", "STOREFRONT_REPLAY_GRACE_SECONDS", 60.0))
    spool = Spool(Path(spool_dir), max_bytes) if spool_dir else None
    writer = WriteBehind(storage, spool, flush_interval=interval, replay_grace=grace)
    WRITERS.append(writer)
    return writer


def _id_secret(settings: Mapping[str, Any], storage: Storage) -> bytes:
    """The secret event ids are signed with: the settings', the environment's, else the one kept in Redis."""
    if settings.get("ID_SECRET"):
        return str(settings["ID_SECRET"]).encode()
    if os.environ.get("STOREFRONT_ID_SECRET"):
        return os.environ["STOREFRONT_ID_SECRET"].encode()
    path = os.environ.get("STOREFRONT_ID_SECRET_FILE")
    if path:
        try:
            secret = Path(path).read_text().strip()
        except OSError as exc:
            raise RuntimeError(f"STOREFRONT_ID_SECRET_FILE={path}: cannot read it: {exc.strerror or exc}") from None
        if len(secret) < 16:
            raise RuntimeError(f"STOREFRONT_ID_SECRET_FILE={path}: the secret must be at least 16 characters")
        return secret.encode()
    try:
        return storage.shared_secret("event-ids")
    except STORAGE_ERRORS as exc:
        raise RuntimeError(
            f"event ids cannot be signed: no STOREFRONT_ID_SECRET (or STOREFRONT_ID_SECRET_FILE) is set and the "
            f"secret kept in Redis cannot be read ({exc}); set one of them so workers start while Redis is away"
        ) from None


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
        looks for new ladder states, ``ADMIN_TOKEN`` overrides ``$STOREFRONT_ADMIN_TOKEN``, ``API_KEYS`` (a
        :class:`~service.http.access.Keys`) replaces the environment's keys (an injected storage reads none
        from the environment), ``ID_SECRET`` the event-id secret.
    clock
        Where event times come from (default the wall clock; tests pass a :class:`~service.clock.ManualClock`).
    """
    config_path = config_path or os.environ.get("STOREFRONT_CONFIG")
    if not config_path:
        raise RuntimeError("no store config: pass config_path or set STOREFRONT_CONFIG")
    holder = ConfigHolder(config_path)
    config = holder.runtime.config
    injected = storage is not None
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
    keys = app.config.get("API_KEYS")
    if keys is None:  # the environment's keys; settings API_KEYS (a Keys) replaces them, ADMIN_TOKEN adds one
        environ = {k: v for k, v in os.environ.items() if k != "STOREFRONT_ADMIN_TOKEN"}
        keys = load_keys(environ) if not injected else Keys([])
    if app.config["ADMIN_TOKEN"]:
        keys = Keys([*keys.keys, *load_keys({"STOREFRONT_ADMIN_TOKEN": str(app.config["ADMIN_TOKEN"])}).keys])
    app.extensions["storefront.keys"] = keys
    app.config.setdefault("DEMO_KEY", os.environ.get("STOREFRONT_DEMO_KEY") or None)
    app.extensions["storefront.ids"] = IdSigner(_id_secret(app.config, storage), config.name)
    app.extensions["storefront"] = holder
    app.extensions["storefront.storage"] = storage
    app.extensions["storefront.clock"] = clock or SYSTEM_CLOCK
    holder.watch_ladders(LadderWatcher(storage, float(app.config.get("LADDER_CHECK_SECONDS", 1.0))))

    app.extensions["storefront.writer"] = _writer(storage, app.config, injected)

    errors.init_app(app)

    @app.after_request
    def _cors(response: Response) -> Response:
        return cors(response, holder.current().config.service.cors_origins)

    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(personalizer.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(ops.bp)
    return app
