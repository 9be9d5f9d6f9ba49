"""Keys, roles, signed event ids, rate limits and reward bounds: who may steer the bandit, and how much."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from bandit.config import ConfigError, load_config
from service import metrics
from service.cli.keys import ensure_dev_secrets, ensure_id_secret, ensure_keys, new_line
from service.clock import ManualClock
from service.http.access import Keys, KeysError, load_keys, parse_keys
from service.http.app import create_app
from service.http.ids import IdSigner
from service.storage.redis_storage import RedisStorage
from tests.conftest import STORE_CONFIG
from tests.support import BACKEND_KEY, BROWSER_KEY, TEST_SETTINGS, keyed

LIMITED_KEY = "sk_limited_key_0123456789abcdef"
IP_LIMITED_KEY = "pk_ip_limited_key_0123456789ab"


def store(tmp_path: Path, **service: Any) -> Path:
    """The test store with ``service`` settings (e.g. access) and reward bounds."""
    config = yaml.safe_load(STORE_CONFIG.read_text())
    config["service"] = {**config.get("service", {}), **service}
    config["reward"] = {**config["reward"], "range": [-1, 5], "max_revenue": 500}
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def app_for(config: Path, storage: RedisStorage, clock: ManualClock | None = None, **settings: Any) -> Flask:
    keys = Keys([
        *TEST_SETTINGS["API_KEYS"].keys,
        *parse_keys([f"backend limited {LIMITED_KEY} limit=3/s", f"browser shop {IP_LIMITED_KEY} ip_limit=2/min"],
                    "test"),
    ])  # fmt: skip
    return create_app(config, storage=storage, settings={**TEST_SETTINGS, "API_KEYS": keys, **settings}, clock=clock)


def rank(client: FlaskClient, **kwargs: Any) -> Any:
    return client.post("/v1/rank", json={"context": {"device": "quest"}}, **kwargs)


def code(response: Any) -> str:
    return str(response.get_json()["error"]["code"])


# --------------------------------------------------------------------------- keys and roles


def test_without_a_key_rank_and_reward_are_refused_with_a_challenge(tmp_path: Path, storage: RedisStorage) -> None:
    client = app_for(store(tmp_path), storage).test_client()
    for response in (rank(client), client.post("/v1/reward", json={"event_id": "x", "slot": "hero", "event": "click"}),
                     client.get("/v1/slots")):  # fmt: skip
        assert response.status_code == 401 and code(response) == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = rank(client, headers={"Authorization": "Bearer sk_not_a_key_of_this_store_000"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.get_json()["error"]["message"]


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key", "Ocp-Apim-Subscription-Key"])
def test_a_backend_key_ranks_and_rewards_in_any_of_the_key_headers(
    tmp_path: Path, storage: RedisStorage, header: str
) -> None:
    client = app_for(store(tmp_path), storage).test_client()
    value = f"Bearer {BACKEND_KEY}" if header == "Authorization" else BACKEND_KEY
    page = rank(client, headers={header: value})
    assert page.status_code == 200, page.get_data(as_text=True)
    body = {"event_id": page.get_json()["event_id"], "slot": "hero", "event": "purchase", "revenue": 30}
    assert client.post("/v1/reward", json=body, headers={header: value}).status_code == 202
    assert client.get("/v1/slots", headers={header: value}).status_code == 200


def test_the_config_may_leave_rank_open_but_reward_keeps_its_key(tmp_path: Path, storage: RedisStorage) -> None:
    client = app_for(store(tmp_path, access={"rank": "open"}), storage).test_client()
    page = rank(client)
    assert page.status_code == 200
    reward = client.post("/v1/reward", json={"event_id": page.get_json()["event_id"], "slot": "hero", "event": "click"})
    assert reward.status_code == 401
    assert rank(client, headers={"Authorization": "Bearer sk_wrong_key_000000000000"}).status_code == 401  # still


def test_a_browser_key_ranks_and_posts_events_but_not_revenue_rewards_or_slots(
    tmp_path: Path, storage: RedisStorage
) -> None:
    client = keyed(app_for(store(tmp_path), storage).test_client(), BROWSER_KEY)
    event_id = rank(client).get_json()["event_id"]
    assert client.post("/v1/reward", json={"event_id": event_id, "slot": "hero", "event": "click"}).status_code == 202
    for body, field in ((
        {"event_id": event_id, "slot": "hero", "event": "purchase", "revenue": 1e9}, "revenue"),
        ({"event_id": event_id, "slot": "hero", "reward": 5}, "reward"),
    ):  # fmt: skip
        refused = client.post("/v1/reward", json=body)
        assert refused.status_code == 403 and refused.get_json()["error"]["field"] == field
    assert code(client.get("/v1/slots")) == "forbidden"


def test_only_a_browser_key_may_come_in_the_url(tmp_path: Path, storage: RedisStorage) -> None:
    client = app_for(store(tmp_path), storage).test_client()
    assert client.post(f"/v1/rank?key={BROWSER_KEY}", json={"context": {"device": "quest"}}).status_code == 200
    leaked = client.post(f"/v1/rank?key={BACKEND_KEY}", json={"context": {"device": "quest"}})
    assert leaked.status_code == 401 and "never in a URL" in leaked.get_json()["error"]["message"]
    assert metrics.AUTH_REFUSED.labels("rank", "secret_in_url")._value.get() >= 1


def test_a_service_without_keys_says_how_to_add_them(tmp_path: Path, storage: RedisStorage) -> None:
    client = create_app(
        store(tmp_path), storage=storage, settings={**TEST_SETTINGS, "API_KEYS": Keys([])}
    ).test_client()
    message = rank(client).get_json()["error"]["message"]
    assert "no API keys" in message and "STOREFRONT_API_KEYS_FILE" in message


# --------------------------------------------------------------------------- signed event ids


def test_a_forged_altered_or_foreign_id_is_refused_without_touching_redis(tmp_path: Path) -> None:
    # Redis is unreachable: a check that reached it would answer 503 (or queue); the signature answers 404 first.
    down = RedisStorage.from_url("redis://127.0.0.1:1/0", "x:")
    client = keyed(app_for(store(tmp_path), down).test_client())
    signer = IdSigner(TEST_SETTINGS["ID_SECRET"].encode(), load_config(STORE_CONFIG).name)
    good = signer.issue(1.7e9)
    other_store = IdSigner(TEST_SETTINGS["ID_SECRET"].encode(), "another-store").issue(1.7e9)
    other_secret = IdSigner(b"another-secret-of-32-bytes-0000", load_config(STORE_CONFIG).name).issue(1.7e9)
    flipped = good[:30] + ("0" if good[30] != "0" else "1") + good[31:]
    for event_id in (flipped, good[:27], other_store, other_secret, good.upper(), "0" * 43):
        answer = client.post("/v1/reward", json={"event_id": event_id, "slot": "hero", "event": "click"})
        assert answer.status_code == 404 and code(answer) == "unknown_event", event_id
        assert "signature" in answer.get_json()["error"]["message"]


def test_ids_of_one_app_verify_in_another_of_the_same_store(tmp_path: Path, storage: RedisStorage) -> None:
    """Workers share the secret (here the one kept in Redis): a page ranked by one is rewarded through another."""
    settings = {k: v for k, v in TEST_SETTINGS.items() if k != "ID_SECRET"}
    one = keyed(create_app(store(tmp_path), storage=storage, settings=settings).test_client())
    two = keyed(create_app(store(tmp_path), storage=storage, settings=settings).test_client())
    event_id = rank(one).get_json()["event_id"]
    assert len(event_id) == 43
    assert two.post("/v1/reward", json={"event_id": event_id, "slot": "hero", "event": "click"}).status_code == 202


# --------------------------------------------------------------------------- rate limits and bounds


def test_a_key_over_its_limit_gets_429_with_retry_after_then_its_next_window(
    tmp_path: Path, storage: RedisStorage
) -> None:
    clock = ManualClock(1_800_000_000.25)
    client = keyed(app_for(store(tmp_path), storage, clock).test_client(), LIMITED_KEY)
    assert [rank(client).status_code for _ in range(3)] == [200, 200, 200]
    over = rank(client)
    assert over.status_code == 429 and code(over) == "rate_limited" and over.headers["Retry-After"] == "1"
    assert rank(keyed(client, BACKEND_KEY)).status_code == 200  # another key (no limit) is not held back
    clock.advance(1.0)
    assert rank(keyed(client, LIMITED_KEY)).status_code == 200


def test_an_ip_limit_holds_back_one_address_not_the_others(tmp_path: Path, storage: RedisStorage) -> None:
    clock = ManualClock(1_800_000_000.0)
    client = keyed(app_for(store(tmp_path), storage, clock).test_client(), IP_LIMITED_KEY)
    one, two = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "203.0.113.9"}
    assert [rank(client, environ_base=one).status_code for _ in range(3)] == [200, 200, 429]
    assert rank(client, environ_base=one).headers["Retry-After"] == "60"
    assert rank(client, environ_base=two).status_code == 200


def test_rate_limits_are_not_enforced_while_redis_is_away(tmp_path: Path) -> None:
    down = RedisStorage.from_url("redis://127.0.0.1:1/0", "x:", socket_connect_timeout=0.2)
    client = keyed(app_for(store(tmp_path), down).test_client(), LIMITED_KEY)
    before = metrics.STORAGE_ERRORS.labels("rate_limit")._value.get()
    assert [rank(client).status_code for _ in range(5)] == [200] * 5  # the pages are served from the rules
    assert metrics.STORAGE_ERRORS.labels("rate_limit")._value.get() == before + 5


def test_rewards_outside_the_configured_bounds_are_refused_by_field(tmp_path: Path, storage: RedisStorage) -> None:
    client = keyed(app_for(store(tmp_path), storage).test_client())
    event_id = rank(client).get_json()["event_id"]
    for body, field in (
        ({"event_id": event_id, "slot": "hero", "reward": 6}, "reward"),
        ({"event_id": event_id, "slot": "hero", "reward": -1.5}, "reward"),
        ({"event_id": event_id, "slot": "hero", "event": "purchase", "revenue": 500.01}, "revenue"),
    ):
        refused = client.post("/v1/reward", json=body)
        assert refused.status_code == 400 and refused.get_json()["error"]["field"] == field, body
    assert client.post("/v1/reward", json={"event_id": event_id, "slot": "hero", "reward": 5}).status_code == 202


# --------------------------------------------------------------------------- where keys come from


def test_a_bad_keys_file_is_refused_with_its_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    cases = {
        "owner x sk_0123456789abcdef": "line 1: unknown role 'owner'",
        "backend x short": "shorter than 16",
        "# comment\n\nbackend x sk_0123456789abcdef limit=fast": "line 3: a rate",
        "backend x sk_0123456789abcdef\nbrowser x pk_0123456789abcdef": "two keys are named 'x'",
        "backend x sk_0123456789abcdef\nbrowser y sk_0123456789abcdef": "have the same secret",
        "backend x sk_0123456789abcdef burst=3": "unknown option",
    }
    for text, message in cases.items():
        keys.write_text(text)
        with pytest.raises(KeysError, match=message) as caught:
            load_keys({"STOREFRONT_API_KEYS_FILE": str(keys)})
        assert str(keys) in str(caught.value) or "named" in message or "same secret" in message
    with pytest.raises(KeysError, match="cannot read"):
        load_keys({"STOREFRONT_API_KEYS_FILE": str(tmp_path / "absent")})


def test_keys_come_from_the_file_the_variable_and_the_admin_token(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(new_line("backend", "web") + "\n")
    keys = load_keys({"STOREFRONT_API_KEYS_FILE": str(tmp_path / "keys"),
                      "STOREFRONT_API_KEYS": f"browser page {BROWSER_KEY}; backend jobs sk_jobs_0123456789abcd",
                      "STOREFRONT_ADMIN_TOKEN": "an-admin-token-of-some-length"})  # fmt: skip
    assert sorted((k.role, k.name) for k in keys.keys) == [
        ("admin", "admin-token"), ("backend", "jobs"), ("backend", "web"), ("browser", "page")
    ]  # fmt: skip
    found = keys.find(BROWSER_KEY)
    assert found is not None and found.name == "page" and keys.find(BROWSER_KEY + "x") is None


def test_serve_makes_private_keys_once_unless_the_environment_has_them(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    made = ensure_keys(tmp_path, environ)
    assert len(made) == 1 and environ["STOREFRONT_API_KEYS_FILE"] == str(tmp_path / "keys")
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o600
    first = (tmp_path / "keys").read_text()
    assert {k.role for k in load_keys(environ).keys} == {"backend", "browser"}
    assert ensure_keys(tmp_path, {}) == [] and (tmp_path / "keys").read_text() == first  # kept
    assert ensure_keys(tmp_path / "absent", {"STOREFRONT_API_KEYS": f"backend mine {BACKEND_KEY}"}) == []
    (tmp_path / "init").mkdir()
    assert ensure_dev_secrets(tmp_path / "init", {}) and (tmp_path / "init" / "id-secret").stat().st_size > 32


def test_replicas_on_one_redis_share_its_id_secret_and_start_from_the_cache_while_it_is_away(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    env_one: dict[str, str] = {}
    env_two: dict[str, str] = {}
    ensure_id_secret(one, env_one, redis_url, prefix)
    ensure_id_secret(two, env_two, redis_url, prefix)
    secret = (one / "id-secret").read_text()
    assert secret == (two / "id-secret").read_text() and len(secret.strip()) == 64
    assert stat.S_IMODE(os.stat(one / "id-secret").st_mode) == 0o600
    assert "cached" in str(ensure_id_secret(one, {}, "redis://127.0.0.1:1/0", prefix))  # Redis away: the cache
    with pytest.raises(RuntimeError, match="none is cached"):
        ensure_id_secret(tmp_path / "three", {}, "redis://127.0.0.1:1/0", prefix)
    assert ensure_id_secret(tmp_path, {"STOREFRONT_ID_SECRET": "x" * 32}, "redis://127.0.0.1:1/0", prefix) is None


def test_a_bad_access_setting_names_its_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"service\.access\.reward.*'key'.*'open'"):
        load_config(store(tmp_path, access={"reward": "public"}))
    with pytest.raises(ConfigError, match=r"service\.access.*admin"):
        load_config(store(tmp_path, access={"admin": "open"}))


def test_pages_of_a_configured_origin_may_call_rank_and_reward_and_others_may_not(
    tmp_path: Path, storage: RedisStorage
) -> None:
    client = app_for(store(tmp_path, cors_origins=["https://www.shop.example"]), storage).test_client()
    shop, other = {"Origin": "https://www.shop.example"}, {"Origin": "https://evil.example"}
    preflight = client.options("/v1/rank", headers={**shop, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "content-type"})  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    page = client.post(f"/v1/rank?key={BROWSER_KEY}", json={"context": {"device": "quest"}}, headers=shop)
    assert page.status_code == 200 and page.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"
    assert "Origin" in page.headers["Vary"]
    refused = client.post(f"/v1/rank?key={BROWSER_KEY}", json={"context": {"device": "quest"}}, headers=other)
    assert "Access-Control-Allow-Origin" not in refused.headers  # the browser keeps the answer from that page
    assert "Access-Control-Allow-Origin" not in client.get("/v1/slots", headers=shop).headers  # not a page's call
    with pytest.raises(ConfigError, match=r"cors_origins\[0\].*origin"):
        load_config(store(tmp_path, cors_origins=["https://www.shop.example/path"]))
