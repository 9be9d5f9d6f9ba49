"""The OpenAPI document: valid, complete, built from the config, and true of the running app.

Every request example in the document is sent to the app built on
``examples/storefront.yaml``; each answer must carry the documented success
status and validate against the documented response schema.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bandit.config import load_config
from service.http.app import create_app
from service.http.openapi import ERROR_CODES, EXAMPLE_EVENT_ID, openapi_document, statuses
from service.storage import RedisStorage
from tests.conftest import EXAMPLE_CONFIG, ROOT, STORE_CONFIG
from tests.support import TEST_SETTINGS, keyed

_DOC_URI = "urn:storefront:openapi"
EXAMPLE_DOC = openapi_document(load_config(EXAMPLE_CONFIG))


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def schema_validator(doc: dict[str, Any], *parts: str) -> Draft202012Validator:
    """A validator for the schema at ``parts`` inside ``doc``, its ``#/components/...`` refs resolved."""
    registry: Registry[Any] = Registry().with_resource(_DOC_URI, Resource(contents=doc, specification=DRAFT202012))
    return Draft202012Validator({"$ref": _DOC_URI + _pointer(*parts)}, registry=registry)


def response_validator(doc: dict[str, Any], path: str, method: str, status: int) -> Draft202012Validator:
    return schema_validator(
        doc, "paths", path, method, "responses", str(status), "content", "application/json", "schema"
    )


def assert_valid(validator: Draft202012Validator, instance: Any) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def success_status(doc: dict[str, Any], path: str, method: str) -> int:
    [status] = [int(s) for s in doc["paths"][path][method]["responses"] if s.startswith("2")]
    return status


def request_examples(doc: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    out = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            for name, example in content.get("examples", {}).items():
                out.append((path, method, name, example["value"]))
    return out


@pytest.fixture
def example_app(storage: RedisStorage) -> Flask:
    return create_app(EXAMPLE_CONFIG, storage=storage, settings=TEST_SETTINGS)


@pytest.fixture
def example_client(example_app: Flask) -> FlaskClient:
    return keyed(example_app.test_client())


# --------------------------------------------------------------------------- the document itself


@pytest.mark.parametrize("config_path", [EXAMPLE_CONFIG, STORE_CONFIG], ids=["storefront.yaml", "store.yaml"])
def test_document_is_valid_openapi_3_1(config_path: Path) -> None:
    doc = openapi_document(load_config(config_path))
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_context_slots_and_items_come_from_the_config() -> None:
    config = load_config(EXAMPLE_CONFIG)
    schemas = EXAMPLE_DOC["components"]["schemas"]
    context = schemas["Context"]
    assert context["required"] == ["device"]
    assert context["additionalProperties"] is False
    assert list(context["properties"]) == [f.name for f in config.context.fields]
    assert context["properties"]["device"]["enum"] == ["quest", "quest-pro", "pcvr", "psvr"]
    assert context["properties"]["country"]["enum"] == ["US", "GB", "DE", "FR", "JP", "KR", "BR", "other", None]
    assert context["properties"]["country"]["default"] == "other"
    age = context["properties"]["age"]
    assert (age["type"], age["minimum"], age["maximum"]) == (["integer", "null"], 13, 120)
    assert schemas["SlotName"]["enum"] == ["hero", "row-1", "row-2"]
    assert schemas["ItemId"]["enum"] == list(config.catalog.ids)
    assert schemas["RewardEvent"]["properties"]["event"]["enum"] == ["click", "add_to_cart", "purchase"]
    assert schemas["ItemList"]["maxItems"] == 500
    # The reward rule is stated with this store's weights.
    description = EXAMPLE_DOC["paths"]["/v1/reward"]["post"]["description"]
    assert "`click` 1, `add_to_cart` 3, `purchase` 10" in description and "(0.1)" in description


def test_documented_error_codes_match_their_status() -> None:
    for path, item in EXAMPLE_DOC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                codes = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
                for code in codes.get("enum", []):
                    assert int(status) in statuses(code), (path, method, code)
    reward_404 = EXAMPLE_DOC["paths"]["/v1/reward"]["post"]["responses"]["404"]["content"]["application/json"]
    assert reward_404["schema"]["properties"]["error"]["properties"]["code"]["enum"] == [
        "unknown_event",
        "unknown_decision",
    ]
    assert set(EXAMPLE_DOC["paths"]["/v1/reward"]["post"]["responses"]) == {
        "202", "400", "401", "403", "404", "410", "413", "429", "500", "503"
    }  # fmt: skip
    assert set(EXAMPLE_DOC["paths"]["/v1/rank"]["post"]["responses"]) == {"200", "400", "401", "413", "429", "500"}
    assert set(EXAMPLE_DOC["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}


def test_every_example_in_the_document_fits_its_schema() -> None:
    checked = 0
    for path, item in EXAMPLE_DOC["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                validator = schema_validator(EXAMPLE_DOC, "paths", path, method, "requestBody", "content",
                                             "application/json", "schema")  # fmt: skip
                for example in content.get("examples", {}).values():
                    assert_valid(validator, example["value"])
                    checked += 1
            for status, response in operation["responses"].items():
                examples = response.get("content", {}).get("application/json", {}).get("examples", {})
                for example in examples.values():
                    assert_valid(response_validator(EXAMPLE_DOC, path, method, int(status)), example["value"])
                    checked += 1
    assert checked >= 15


def test_cached_per_config_version(tmp_path: Path) -> None:
    config = load_config(STORE_CONFIG)
    assert openapi_document(config) is openapi_document(load_config(STORE_CONFIG))
    changed = tmp_path / "store.yaml"
    changed.write_text(STORE_CONFIG.read_text().replace("exploration: 0.2", "exploration: 0.25"))
    other = openapi_document(load_config(changed))
    assert other is not openapi_document(config)
    assert other["x-config-version"] != config.version


def test_every_error_code_is_in_the_prose_reference() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [code for code in ERROR_CODES if f"`{code}`" not in text]
    assert not missing, f"docs/api.md does not explain: {missing}"


# --------------------------------------------------------------------------- the document against the app


def test_routes_and_document_paths_match(example_app: Flask) -> None:
    routes: dict[str, set[str]] = {}
    for rule in example_app.url_map.iter_rules():
        path = re.sub(r"<(?:[^<>]*:)?(\w+)>", r"{\1}", rule.rule)  # Flask's <slot>, <any(...):v> are {slot}, {v}
        routes.setdefault(path, set()).update(m.lower() for m in (rule.methods or ()) - {"HEAD", "OPTIONS"})
    documented = {path: set(item) for path, item in EXAMPLE_DOC["paths"].items()}
    assert routes == documented


def test_served_document_is_the_configured_one(example_client: FlaskClient) -> None:
    response = example_client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == json.loads(json.dumps(EXAMPLE_DOC))
    assert_valid(response_validator(EXAMPLE_DOC, "/openapi.json", "get", 200), response.get_json())


@pytest.mark.parametrize(
    ("path", "method", "name", "body"),
    request_examples(EXAMPLE_DOC),
    ids=[f"{method} {path} {name}" for path, method, name, _ in request_examples(EXAMPLE_DOC)],
)
def test_request_example_gets_the_documented_answer(
    example_client: FlaskClient, path: str, method: str, name: str, body: Any
) -> None:
    body = copy.deepcopy(body)
    if body.get("event_id") == EXAMPLE_EVENT_ID:  # a reward example: post it for a page ranked just now
        [first_rank] = [b for p, _, n, b in request_examples(EXAMPLE_DOC) if p == "/v1/rank" and n == "whole_page"]
        ranked = example_client.post("/v1/rank", json=first_rank)
        assert ranked.status_code == 200 and ranked.get_json()["logged"] is True
        body["event_id"] = ranked.get_json()["event_id"]
    response = example_client.open(path, method=method.upper(), json=body)
    assert response.status_code == success_status(EXAMPLE_DOC, path, method), response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert_valid(response_validator(EXAMPLE_DOC, path, method, response.status_code), response.get_json())


@pytest.mark.parametrize("path", ["/v1/slots", "/healthz", "/readyz"])
def test_get_endpoint_answers_fit_the_document(example_client: FlaskClient, path: str) -> None:
    example_client.post("/v1/rank", json={"context": {"device": "pcvr"}})
    response = example_client.get(path)
    assert response.status_code == 200
    assert_valid(response_validator(EXAMPLE_DOC, path, "get", 200), response.get_json())


def test_metrics_are_text_as_documented(example_client: FlaskClient) -> None:
    response = example_client.get("/metrics")
    assert response.status_code == 200
    assert list(EXAMPLE_DOC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [response.mimetype]
    assert "storefront_decisions_total" in response.get_data(as_text=True)


def test_unreachable_redis_answers_fit_the_document() -> None:
    down = RedisStorage.from_url("redis://127.0.0.1:1/0", "x:")
    client = keyed(create_app(EXAMPLE_CONFIG, storage=down, settings=TEST_SETTINGS).test_client())
    readyz = client.get("/readyz")
    assert readyz.status_code == 503
    assert_valid(response_validator(EXAMPLE_DOC, "/readyz", "get", 503), readyz.get_json())
    ranked = client.post("/v1/rank", json={"context": {"device": "quest"}})
    assert ranked.status_code == 200
    assert_valid(response_validator(EXAMPLE_DOC, "/v1/rank", "post", 200), ranked.get_json())
    reward = client.post("/v1/reward", json={"event_id": ranked.get_json()["event_id"], "slot": "hero", "reward": 1})
    assert reward.status_code == 503
    assert_valid(response_validator(EXAMPLE_DOC, "/v1/reward", "post", 503), reward.get_json())
    slots = client.get("/v1/slots")
    assert slots.status_code == 200 and slots.get_json()["counts_available"] is False
    assert_valid(response_validator(EXAMPLE_DOC, "/v1/slots", "get", 200), slots.get_json())
