"""The operations endpoints: liveness and readiness probes, Prometheus metrics and this document.

``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` (tag ``ops``), with
the ``Health`` and ``Readiness`` schemas of the probes' answers.  None of them
depends on the store config.
"""

from __future__ import annotations

from typing import Any

from service.http.openapi.blocks import get_operation, json_body, ref


def ops_schemas() -> dict[str, Any]:
    """The components of the probes' answers, by name."""
    return {
        "Health": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "checks": {
                    "type": "object",
                    "required": ["config", "storage"],
                    "additionalProperties": {
                        "type": "object",
                        "required": ["ok"],
                        "properties": {
                            "ok": {"type": "boolean"},
                            "version": {"type": "string"},
                            "error": {"type": "string"},
                        },
                    },
                },
            },
        },
    }


def ops_paths() -> dict[str, Any]:
    """The ops path items, by path."""
    return {
        "/healthz": get_operation("healthz", "Liveness: the process answers", json_body(ref("Health"), "Up."), "ops"),
        "/readyz": get_operation(
            "readyz",
            "Readiness: config loaded and Redis reachable",
            json_body(ref("Readiness"), "Ready."),
            "ops",
            **{"503": json_body(ref("Readiness"), "Not ready: `checks.storage.ok` is false (Redis unreachable).")},
        ),
        "/metrics": get_operation(
            "metrics",
            "Prometheus metrics",
            {
                "description": "The Prometheus text exposition format (merged across workers under gunicorn).",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "ops",
        ),
        "/static/storefront.js": get_operation(
            "snippet",
            "The page snippet: ranks the page's slots with a browser key, reports clicks (docs/integration.md)",
            {
                "description": "JavaScript, no dependencies.",
                "content": {"text/javascript": {"schema": {"type": "string"}}},
            },
            "ops",
        ),
        "/demo": get_operation(
            "demo",
            "A demo storefront of the configured catalog that uses only the snippet (`?key=` a browser key)",
            {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
            "ops",
        ),
        "/openapi.json": get_operation(
            "openapi",
            "This document",
            json_body(
                {"type": "object", "required": ["openapi", "info", "paths"]},
                "The OpenAPI 3.1 document of the store currently configured.",
            ),
            "ops",
        ),
    }
