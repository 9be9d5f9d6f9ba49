"""Operational endpoints: health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from service import metrics
from service.http.openapi import openapi_document
from service.storage import STORAGE_ERRORS
from service.storage.protocols import StorageStatus

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering (for a liveness probe)."""
    return Response('{"status":"ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to log decisions: config loaded, and storage reachable or a spool with room (for a readiness probe).

    ``degraded`` (200): Redis is away and this worker spools its writes until it is back.
    """
    holder = current_app.extensions["storefront"]
    config = holder.current().config
    checks = {"config": {"ok": True, "version": config.version}}
    try:
        status: StorageStatus = current_app.extensions["storefront.storage"]
        status.ping()
        checks["storage"] = {"ok": True}
    except STORAGE_ERRORS as exc:
        checks["storage"] = {"ok": False, "error": str(exc)}
    writer = current_app.extensions.get("storefront.writer")
    spooling = False
    if writer is not None:
        # Without Redis a worker with a spool that has room keeps every write (ready, but degraded).
        state = writer.ready()
        spooling = bool(state["spool_room"])
        checks["writer"] = {"ok": checks["storage"]["ok"] or spooling, **state}
    ready = all(c["ok"] for name, c in checks.items() if name != "storage" or not spooling)
    degraded = ready and not checks["storage"]["ok"]
    body = {"status": "degraded" if degraded else "ready" if ready else "not_ready", "checks": checks}
    return Response(json.dumps(body), mimetype="application/json"), 200 if ready else 503


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    data, content_type = metrics.render()
    return Response(data, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    holder = current_app.extensions["storefront"]
    return Response(json.dumps(openapi_document(holder.current().config)), mimetype="application/json")
