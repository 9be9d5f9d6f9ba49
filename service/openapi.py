"""The OpenAPI 3.1 document (being written)."""

from __future__ import annotations

from typing import Any

from bandit.config import StoreConfig


def openapi_document(config: StoreConfig) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "storefront bandit", "version": "0.1.0"}, "paths": {}}
