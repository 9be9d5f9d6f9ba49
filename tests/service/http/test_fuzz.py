"""Schemathesis against the served /openapi.json: generated requests on every operation, no 5xx, every answer
as documented (status, content type, body schema).  Derandomised: CI runs the same cases every time."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.http.app import create_app
from service.storage.redis_storage import RedisStorage
from tests.service.http.test_openapi import EXAMPLE_CONFIG
from tests.support import BACKEND_KEY, TEST_SETTINGS

ADMIN = "fuzz-admin-token-0123456789"
EXAMPLES_PER_OPERATION = 40
# What the document promises: no 5xx, and every status, content type, header and body as documented.  Not the
# checks that a schema-valid request is accepted (business rules the schema cannot say, e.g. revenue only with
# a purchase, a reward for a page that was never ranked) or that an invalid one is refused.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip


def test_every_operation_answers_as_documented(storage: RedisStorage) -> None:
    app = create_app(EXAMPLE_CONFIG, storage=storage, settings={**TEST_SETTINGS, "ADMIN_TOKEN": ADMIN})
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            key = ADMIN if case.path.startswith("/v1/admin") else BACKEND_KEY
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
            calls.append(case.operation.label)

        run()
    print(f"\n{len(calls)} generated requests over {len(set(calls))} operations")
    assert len(calls) >= 1000
