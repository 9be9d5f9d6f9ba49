"""The whole document: ``info`` with its description, the tags, the paths and the components, put together.

:func:`build` assembles the parts the sibling modules build from the config
(store, admin and ops paths; error, store, admin and ops schemas) into one
OpenAPI 3.1 document, under an ``info`` description that names the store and
config version and states the error conventions and the reward rule.
"""

from __future__ import annotations

from typing import Any

from bandit.config import StoreConfig
from service.http.openapi.admin import admin_paths, admin_schemas
from service.http.openapi.errors import error_schema
from service.http.openapi.ops import ops_paths, ops_schemas
from service.http.openapi.paths import store_paths
from service.http.openapi.personalizer import personalizer_paths
from service.http.openapi.reward_rule import reward_rule
from service.http.openapi.schemas import store_schemas

API_VERSION = "1.0.0"


def build(config: StoreConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``config``, built afresh (the package's ``openapi_document`` caches it)."""
    description = (
        f"The API of the storefront bandit serving store `{config.name}`, config version `{config.version}`. "
        "This document is generated from the config in force: context fields, slots, items and event types are "
        "the configured ones, and it changes when the config is reloaded.\n\n"
        'Errors are always JSON, `{"error": {"code", "message", "field"}}`, with a stable `code`. Besides '
        "the statuses listed per operation, any path answers 404 `not_found` when there is no such endpoint and "
        "405 `method_not_allowed` (with an `Allow` header) for a method an endpoint does not take. Request bodies "
        f"are limited to {config.service.max_body_bytes} bytes (413 `body_too_large`).\n\n"
        "Reward rule: " + reward_rule(config)
    )
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": f"storefront bandit — {config.name}",
            "version": API_VERSION,
            "description": description,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "x-config-version": config.version,
        "tags": [
            {"name": "store", "description": "Called by the web store."},
            {"name": "ops", "description": "Probes, metrics and this document."},
            {"name": "admin", "description": "Escalation status and operator actions (an admin key)."},
            {
                "name": "personalizer",
                "description": "Azure Personalizer's REST surface, mapped onto this service "
                "(docs/migrating-from-personalizer.md).",
            },
        ],
        "paths": {
            **store_paths(config),
            **admin_paths(list(config.slot_names)),
            **ops_paths(),
            **personalizer_paths(config),
        },
        "components": {
            "schemas": {"Error": error_schema(), **store_schemas(config), **admin_schemas(), **ops_schemas()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`STOREFRONT_API_KEYS_FILE`, docs/security.md) as `Authorization: "
                    "Bearer <key>`: backend and browser keys for the store API, admin keys for everything.",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Api-Key",
                    "description": "The same keys in the `X-Api-Key` header (or `Ocp-Apim-Subscription-Key`).",
                },
                "browserKey": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "key",
                    "description": "A browser (publishable) key in the URL, for `navigator.sendBeacon`, which "
                    "cannot set headers. A backend or admin key sent this way is refused (401).",
                },
            },
        },
    }
