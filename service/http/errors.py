"""Error responses: always JSON ``{"error": {"code", "message", "field"}}``, never an HTML page.

Client mistakes get a 4xx that names the offending field (``field`` is a path
such as ``context.country`` or ``candidates[3]``, or ``body`` for the request
as a whole).  Anything else is a bug: it is logged with its traceback and
answered with a plain 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from service import metrics

log = logging.getLogger("storefront")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A client error with its HTTP status, a stable machine-readable code and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):  # fmt: skip
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra


@lru_cache(maxsize=512)
def _responses(endpoint: str, status: int) -> Any:
    """The labelled child, looked up once (``labels()`` validates and locks on every call)."""
    return metrics.RESPONSES.labels(endpoint, str(status))


def error_response(status: int, code: str, message: str, field: str | None, **extra: Any) -> tuple[Response, int]:
    endpoint = request.endpoint or "unmatched"
    metrics.ERRORS.labels(endpoint.rpartition(".")[2] if request.endpoint else "unmatched", code).inc()
    body = {"error": {"code": code, "message": message, "field": field, **extra}}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    @app.after_request
    def _count(response: Response) -> Response:
        # Bounded labels: the view function's name (or 'unmatched') and the status code.
        endpoint = request.endpoint.rpartition(".")[2] if request.endpoint else "unmatched"
        _responses(endpoint, response.status_code).inc()
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        response, status = error_response(exc.status, exc.code, exc.message, exc.field, **exc.extra)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        field = "body" if status == 413 else None
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes (service.max_body_bytes)"
        elif status == 404:
            message = f"no endpoint at {request.path}; see /openapi.json"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        response, status = error_response(status, code, message, field)
        allowed = getattr(exc, "valid_methods", None) if isinstance(exc, HTTPException) and exc.code == 405 else None
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the service log has the details", None)
