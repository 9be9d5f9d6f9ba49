"""Every bad input gets a 4xx naming its code and field, in the one error shape; never a 500.

The app is built on ``tests/fixtures/store.yaml``: context ``country`` (US, DE,
JP; default US), ``device`` (quest, pcvr; required), ``age`` (integer 13-120),
``hour``; slots hero, row-1, row-2; items a-g; events click, add_to_cart,
purchase; default limits (65,536 bytes, 1,000 candidates).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bandit.config import load_config
from service.http.openapi import openapi_document
from tests.conftest import STORE_CONFIG
from tests.service.http.test_openapi import assert_valid, response_validator, schema_validator

DOC = openapi_document(load_config(STORE_CONFIG))
OK_CONTEXT = {"device": "quest"}
HUGE = 10**400  # an int too large for a float
_DROP = object()  # leave the field out


def rank(**fields: Any) -> dict[str, Any]:
    return {"context": OK_CONTEXT, **fields}


def reward(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": "not-an-id", "slot": "hero"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not _DROP}


def ctx(**fields: Any) -> dict[str, Any]:
    return {"context": {**OK_CONTEXT, **fields}}


# (id, body as bytes or a JSON value, status, code, field)
RANK_CASES: list[tuple[str, bytes | Any, int, str, str | None]] = [
    ("malformed JSON", b'{"context": ', 400, "invalid_json", "body"),
    ("empty body", b"", 400, "invalid_json", "body"),
    ("not UTF-8", b'{"context": "\xff"}', 400, "invalid_json", "body"),
    ("nested too deeply", b"[" * 50_000, 400, "invalid_json", "body"),
    ("body is a list", [1, 2], 400, "invalid_type", "body"),
    ("body is a string", "hero", 400, "invalid_type", "body"),
    ("body is null", None, 400, "invalid_type", "body"),
    ("unknown top-level field", rank(page=1), 400, "unknown_field", "page"),
    ("only an unknown field", {"contxt": OK_CONTEXT}, 400, "unknown_field", "contxt"),
    ("no context", {}, 400, "missing_field", "context.device"),
    ("context not an object", {"context": ["quest"]}, 400, "invalid_type", "context"),
    ("context null", {"context": None}, 400, "invalid_type", "context"),
    ("slots not a list", rank(slots="hero"), 400, "invalid_type", "slots"),
    ("slots empty", rank(slots=[]), 400, "invalid_type", "slots"),
    ("slot not a string", rank(slots=["hero", 3]), 400, "invalid_type", "slots[1]"),
    ("unknown slot", rank(slots=["footer"]), 400, "unknown_slot", "slots[0]"),
    ("duplicate slot", rank(slots=["hero", "row-1", "hero"]), 400, "duplicate_slot", "slots"),
    ("candidates not a list", rank(candidates="a"), 400, "invalid_type", "candidates"),
    ("candidate not a string", rank(candidates=["a", 1]), 400, "invalid_type", "candidates[1]"),
    ("unknown item in candidates", rank(candidates=["a", "zz"]), 400, "unknown_item", "candidates[1]"),
    ("duplicate item in candidates", rank(candidates=["a", "b", "a"]), 400, "duplicate_item", "candidates[2]"),
    ("too many candidates", rank(candidates=["a"] * 1001), 400, "too_many_items", "candidates"),
    ("exclude not a list", rank(exclude={"a": 1}), 400, "invalid_type", "exclude"),
    ("excluded item not a string", rank(exclude=[None]), 400, "invalid_type", "exclude[0]"),
    ("unknown item in exclude", rank(exclude=["zz"]), 400, "unknown_item", "exclude[0]"),
    ("duplicate item in exclude", rank(exclude=["c", "c"]), 400, "duplicate_item", "exclude[1]"),
    ("too many excluded", rank(exclude=["a"] * 1001), 400, "too_many_items", "exclude"),
    ("unknown context field", ctx(colour="red"), 400, "unknown_field", "context.colour"),
    ("unknown category value", ctx(device="rift"), 400, "invalid_value", "context.device"),
    ("category not a string", ctx(country=1), 400, "invalid_value", "context.country"),
    ("missing required field", {"context": {"country": "US"}}, 400, "missing_field", "context.device"),
    ("required field null", {"context": {"device": None}}, 400, "missing_field", "context.device"),
    ("number below range", ctx(age=12), 400, "invalid_value", "context.age"),
    ("number above range", ctx(age=121), 400, "invalid_value", "context.age"),
    ("integer with a fraction", ctx(age=30.5), 400, "invalid_value", "context.age"),
    ("number as a string", ctx(age="30"), 400, "invalid_value", "context.age"),
    ("number as a bool", ctx(age=True), 400, "invalid_value", "context.age"),
    ("number too large for a float", ctx(age=HUGE), 400, "invalid_value", "context.age"),
    ("hour out of range", ctx(hour=24), 400, "invalid_value", "context.hour"),
    ("NaN", b'{"context": {"device": "quest", "age": NaN}}', 400, "invalid_value", "context.age"),
    ("Infinity", b'{"context": {"device": "quest", "age": Infinity}}', 400, "invalid_value", "context.age"),
    ("-Infinity", b'{"context": {"device": "quest", "age": -Infinity}}', 400, "invalid_value", "context.age"),
    ("1e999", b'{"context": {"device": "quest", "age": 1e999}}', 400, "invalid_value", "context.age"),
    ("body over the limit", b'{"context": {"device": "quest"}, "x": "' + b"a" * 70_000 + b'"}', 413,
     "body_too_large", "body"),
]  # fmt: skip

REWARD_CASES: list[tuple[str, bytes | Any, int, str, str | None]] = [
    ("malformed JSON", b'{"event_id": "x",', 400, "invalid_json", "body"),
    ("empty body", b"", 400, "invalid_json", "body"),
    ("body is a list", [], 400, "invalid_type", "body"),
    ("unknown top-level field", reward(event="click", user="u1"), 400, "unknown_field", "user"),
    ("missing event_id", reward(event_id=_DROP, event="click"), 400, "missing_field", "event_id"),
    ("missing slot", reward(slot=_DROP, event="click"), 400, "missing_field", "slot"),
    ("event_id not a string", reward(event_id=123, event="click"), 400, "invalid_type", "event_id"),
    ("event_id null", reward(event_id=None, event="click"), 400, "invalid_type", "event_id"),
    ("slot not a string", reward(slot=["hero"], event="click"), 400, "invalid_type", "slot"),
    ("unknown slot", reward(slot="footer", event="click"), 400, "unknown_slot", "slot"),
    ("both event and reward", reward(event="click", reward=1), 400, "missing_field", "reward"),
    ("neither event nor reward", reward(), 400, "missing_field", "event"),
    ("unknown event type", reward(event="like"), 400, "unknown_event_type", "event"),
    ("reserved event type", reward(event="reward"), 400, "unknown_event_type", "event"),
    ("event not a string", reward(event=1), 400, "invalid_type", "event"),
    ("revenue negative", reward(event="purchase", revenue=-1), 400, "invalid_value", "revenue"),
    ("revenue NaN", b'{"event_id": "x", "slot": "hero", "event": "purchase", "revenue": NaN}', 400,
     "invalid_value", "revenue"),
    ("revenue a string", reward(event="purchase", revenue="9.99"), 400, "invalid_value", "revenue"),
    ("revenue a bool", reward(event="purchase", revenue=True), 400, "invalid_value", "revenue"),
    ("revenue too large for a float", reward(event="purchase", revenue=HUGE), 400, "invalid_value", "revenue"),
    ("revenue with an explicit reward", reward(reward=1, revenue=5), 400, "unknown_field", "revenue"),
    ("revenue with a click (it would not count)", reward(event="click", revenue=5), 400, "invalid_value", "revenue"),
    ("reward NaN", b'{"event_id": "x", "slot": "hero", "reward": NaN}', 400, "invalid_value", "reward"),
    ("reward Infinity", b'{"event_id": "x", "slot": "hero", "reward": Infinity}', 400, "invalid_value", "reward"),
    ("reward a string", reward(reward="1"), 400, "invalid_value", "reward"),
    ("reward a bool", reward(reward=False), 400, "invalid_value", "reward"),
    ("reward null", reward(reward=None), 400, "invalid_value", "reward"),
    ("reward too large for a float", reward(reward=HUGE), 400, "invalid_value", "reward"),
    ("malformed event id", reward(event="click"), 404, "unknown_event", "event_id"),
    ("body over the limit", b'{"x": "' + b"a" * 70_000 + b'"}', 413, "body_too_large", "body"),
]  # fmt: skip


def post(client: FlaskClient, path: str, body: bytes | Any) -> TestResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=data, content_type="application/json")


def assert_error(response: TestResponse, status: int, code: str, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = json.loads(response.get_data())
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert (body["error"]["code"], body["error"]["field"]) == (code, field), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


@pytest.mark.parametrize(
    ("body", "status", "code", "field"), [c[1:] for c in RANK_CASES], ids=[c[0] for c in RANK_CASES]
)
def test_rank_refuses(client: FlaskClient, body: bytes | Any, status: int, code: str, field: str | None) -> None:
    error = assert_error(post(client, "/v1/rank", body), status, code, field)
    assert_valid(response_validator(DOC, "/v1/rank", "post", status), error)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"), [c[1:] for c in REWARD_CASES], ids=[c[0] for c in REWARD_CASES]
)
def test_reward_refuses(client: FlaskClient, body: bytes | Any, status: int, code: str, field: str | None) -> None:
    error = assert_error(post(client, "/v1/reward", body), status, code, field)
    assert_valid(response_validator(DOC, "/v1/reward", "post", status), error)


def test_well_formed_event_id_not_logged_yet_is_queued(client: FlaskClient, app: Flask) -> None:
    """A fresh id the storage has not seen may be a page still in another worker's write-behind: kept, not 404."""
    fresh = app.extensions["storefront.ids"].issue(time.time())
    response = post(client, "/v1/reward", {"event_id": fresh, "slot": "hero", "event": "click"})
    assert response.status_code == 202, response.get_data(as_text=True)
    body = json.loads(response.get_data())
    assert body["status"] == "queued"
    assert_valid(response_validator(DOC, "/v1/reward", "post", 202), body)


def test_event_id_from_long_ago_is_late(client: FlaskClient, app: Flask) -> None:
    long_ago = app.extensions["storefront.ids"].issue(0.0)
    response = post(client, "/v1/reward", {"event_id": long_ago, "slot": "hero", "reward": 1})
    error = assert_error(response, 410, "reward_window_closed", "event_id")
    assert_valid(response_validator(DOC, "/v1/reward", "post", 410), error)


def test_slot_the_event_did_not_fill(client: FlaskClient) -> None:
    page = client.post("/v1/rank", json={"context": OK_CONTEXT, "slots": ["hero"]}).get_json()
    response = post(client, "/v1/reward", {"event_id": page["event_id"], "slot": "row-2", "event": "click"})
    error = assert_error(response, 404, "unknown_decision", "slot")
    assert_valid(response_validator(DOC, "/v1/reward", "post", 404), error)


def test_slot_left_empty_is_not_a_decision(client: FlaskClient) -> None:
    page = client.post("/v1/rank", json={"context": OK_CONTEXT, "candidates": ["a"]}).get_json()
    assert [s["item"] for s in page["slots"]] == ["a", None, None]
    response = post(client, "/v1/reward", {"event_id": page["event_id"], "slot": "row-1", "event": "click"})
    assert_error(response, 404, "unknown_decision", "slot")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/rank", {"POST"}),
        ("PUT", "/v1/reward", {"POST"}),
        ("POST", "/v1/slots", {"GET", "HEAD"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/readyz", {"GET", "HEAD"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_a_json_405_with_allow(client: FlaskClient, method: str, path: str, allowed: set[str]) -> None:
    response = client.open(path, method=method, json={})
    error = assert_error(response, 405, "method_not_allowed", None)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert_valid(schema_validator(DOC, "components", "schemas", "Error"), error)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/"), ("GET", "/nope"), ("POST", "/v1/ranks"), ("GET", "/static/x")]
)
def test_unknown_path_is_a_json_404(client: FlaskClient, method: str, path: str) -> None:
    error = assert_error(client.open(path, method=method), 404, "not_found", None)
    assert_valid(schema_validator(DOC, "components", "schemas", "Error"), error)


# --------------------------------------------------------------------------- fuzz-ish


def _random_value(rng: random.Random, depth: int, keys: list[str], strings: list[str]) -> Any:
    kind = rng.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 13, 30, 121, 10**30, HUGE, rng.randint(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, float("nan"), float("inf"), -float("inf"), rng.uniform(-100, 100)])
    if kind in (4, 5, 6, 7):
        return rng.choice(strings)
    if kind in (8, 9):
        return [_random_value(rng, depth + 1, keys, strings) for _ in range(rng.randrange(4))]
    return {rng.choice(keys): _random_value(rng, depth + 1, keys, strings) for _ in range(rng.randrange(5))}


def _random_body(rng: random.Random, valid: dict[str, Any], keys: list[str], strings: list[str]) -> bytes:
    """Garbage bytes, a random JSON value, or (mostly) a valid body with a few fields changed or dropped."""
    roll = rng.random()
    if roll < 0.05:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if roll < 0.15:
        return json.dumps(_random_value(rng, 0, keys, strings)).encode()
    body = json.loads(json.dumps(valid))
    for _ in range(rng.randrange(4)):
        target = (
            body["context"] if "context" in body and isinstance(body["context"], dict) and rng.random() < 0.5 else body
        )
        if target and rng.random() < 0.25:
            del target[rng.choice(sorted(target))]
        else:
            target[rng.choice(keys)] = _random_value(rng, 1, keys, strings)
    return json.dumps(body).encode()  # allow_nan: NaN and Infinity go out as the bare words


RANK_KEYS = ["context", "slots", "candidates", "exclude", "device", "country", "age", "hour", "x"]
REWARD_KEYS = ["event_id", "slot", "event", "reward", "revenue", "x"]


@pytest.mark.parametrize("path", ["/v1/rank", "/v1/reward"])
def test_random_bodies_never_5xx(client: FlaskClient, path: str) -> None:
    rng = random.Random(20240611)
    event_id = client.post("/v1/rank", json={"context": OK_CONTEXT}).get_json()["event_id"]
    strings = ["", "a", "c", "hero", "row-1", "quest", "pcvr", "JP", "click", "purchase", "zz", "\u00e9", event_id]
    if path == "/v1/rank":
        valid, keys, success = {"context": dict(OK_CONTEXT)}, RANK_KEYS, 200
    else:
        valid, keys, success = {"event_id": event_id, "slot": "hero", "event": "click"}, REWARD_KEYS, 202
    statuses: dict[int, int] = {}
    for _ in range(300):
        body = _random_body(rng, valid, keys, strings)
        response = post(client, path, body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
        payload = json.loads(response.get_data())
        if response.status_code != success:
            assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "field"}, body
        assert_valid(response_validator(DOC, path, "post", response.status_code), payload)
    # The generator reaches past the JSON parser, and some bodies still succeed.
    assert statuses.get(400, 0) > 100 and statuses.get(success, 0) > 10, statuses
