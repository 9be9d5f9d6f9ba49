"""The OpenAPI 3.1 document of the service, built from the store config it serves.

``GET /openapi.json`` serves :func:`openapi_document` for the config in force,
so the document describes *this* store: the context fields with their types,
allowed values, ranges and required flags, the slot names and item ids as
enums, the configured event types and the reward rule with its weights.  It is
the machine-readable source of truth of the API; ``docs/api.md`` is the prose.

Every status an endpoint can answer is listed with the error codes it can
carry (:data:`ERROR_CODES` is the one table of them), and every request example
is a valid request for the config: ``tests/service/http/test_openapi.py`` sends each one to
the app and checks the answer against the documented schema.

Schemas are JSON Schema 2020-12 (the dialect OpenAPI 3.1 uses).

This package holds the public API and the cache; the document is built by
:mod:`~service.http.openapi.document` from one module per part: the error
codes (``errors``), the context (``context``), the store schemas (``schemas``)
and paths (``paths``), the admin API (``admin``), the ops endpoints (``ops``),
the examples (``examples``), the reward rule (``reward_rule``) and the shared
helpers (``blocks``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from bandit.config import StoreConfig
from service.http.openapi.document import API_VERSION, build
from service.http.openapi.errors import ERROR_CODES, EXTRA_STATUSES, statuses
from service.http.openapi.examples import EXAMPLE_EVENT_ID

__all__ = ["API_VERSION", "ERROR_CODES", "EXAMPLE_EVENT_ID", "EXTRA_STATUSES", "openapi_document", "statuses"]

_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 8


def openapi_document(config: StoreConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``config``, cached per config version.

    The returned dict is shared between calls: treat it as read-only.

    >>> from pathlib import Path
    >>> from bandit.config import load_config
    >>> config = load_config(Path(__file__).parents[3] / "examples" / "storefront.yaml")
    >>> doc = openapi_document(config)
    >>> doc["openapi"], [path for path in sorted(doc["paths"]) if path.startswith("/v1/") and "admin" not in path]
    ('3.1.0', ['/v1/rank', '/v1/reward', '/v1/slots'])
    >>> sorted(path for path in doc["paths"] if path.startswith("/v1/admin/"))[:2]
    ['/v1/admin/slots', '/v1/admin/slots/{slot}']
    >>> len([path for path in doc["paths"] if path.startswith("/personalizer/")])  # 8 operations, 2 paths each
    16
    >>> doc["components"]["schemas"]["SlotName"]["enum"], openapi_document(config) is doc
    (['hero', 'row-1', 'row-2'], True)
    """
    with _cache_lock:
        doc = _cache.get(config.version)
        if doc is not None:
            _cache.move_to_end(config.version)
            return doc
    doc = build(config)
    with _cache_lock:
        _cache[config.version] = doc
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return doc
