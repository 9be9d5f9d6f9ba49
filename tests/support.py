"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

C = TypeVar("C")


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# The API's keys in tests: a backend key every test client sends, and a browser key for the tests of roles.
BACKEND_KEY = "sk_test_backend_key_0123456789"
BROWSER_KEY = "pk_test_browser_key_0123456789"


def test_keys() -> Any:
    from service.http.access import Keys, parse_keys

    lines = [f"backend tests {BACKEND_KEY}", f"browser page {BROWSER_KEY}"]  # admin: settings ADMIN_TOKEN
    return Keys(parse_keys(lines, "tests"))


#: create_app's settings in tests: the keys above, and an event-id secret (so an unreachable Redis can be injected).
TEST_SETTINGS: dict[str, Any] = {"TESTING": True, "API_KEYS": test_keys(), "ID_SECRET": "tests-event-id-secret-0123"}


def keyed(client: C, key: str = BACKEND_KEY) -> C:
    """``client`` sending ``key`` with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"  # type: ignore[attr-defined]
    return client


#: The same keys for a live service (``STOREFRONT_API_KEYS``), and the header its test clients send.
LIMITED_KEY = "sk_test_limited_key_0123456789"  # two requests a minute
KEYS_ENV = f"backend tests {BACKEND_KEY}; browser page {BROWSER_KEY}; backend limited {LIMITED_KEY} limit=2/min"
KEY_HEADERS = {"Authorization": f"Bearer {BACKEND_KEY}"}


def keyed_session() -> Any:
    """A ``requests.Session`` sending the backend key with every request."""
    import requests

    session = requests.Session()
    session.headers.update(KEY_HEADERS)
    return session
