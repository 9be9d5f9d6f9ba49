"""Who may call what: API keys, their roles, and per-key rate limits.

Keys never live in the store YAML (it is shared and committed); they come from
the environment:

``STOREFRONT_API_KEYS_FILE``  a file of keys, one per line (below)
``STOREFRONT_API_KEYS``       the same lines, separated by newlines or ``;`` (e.g. from a secret manager)
``STOREFRONT_ADMIN_TOKEN``    one more key, role ``admin``, named ``admin-token`` (the older way to set it)

A line is ``<role> <name> <secret> [limit=<n>/s|/min] [ip_limit=<n>/s|/min]``;
``#`` starts a comment.  Roles:

``backend``  the store's servers: rank, reward (events, revenue, explicit values), ``GET /v1/slots``
``browser``  a publishable key for pages: rank, and events without revenue; it may come in the URL
             (``?key=``), since ``navigator.sendBeacon`` cannot set headers
``admin``    everything, and the admin API

A request sends its key as ``Authorization: Bearer <key>``, ``X-Api-Key: <key>``
or ``Ocp-Apim-Subscription-Key: <key>`` (the header Personalizer's clients send).
Secrets are looked up by their SHA-256 and confirmed with a constant-time
comparison.  ``service.access`` in the YAML may leave rank (and, for a trial,
reward or slots) open; the admin API always needs a key.

``limit`` bounds the key's requests per second (or minute) over every worker;
``ip_limit`` the requests of one client address with that key.  Both are
counted in Redis in fixed windows (one ``INCR`` per limited request; a key with
no limit costs nothing); over the limit a request gets ``429`` with
``Retry-After``.  When Redis is unreachable the limits are not enforced (the
page is served) and the error is counted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Response, current_app, request

from service import metrics
from service.http.errors import ApiError
from service.storage import STORAGE_ERRORS
from service.storage.protocols import AccessStore

log = logging.getLogger("storefront")

ROLES: Mapping[str, frozenset[str]] = {
    "backend": frozenset({"rank", "reward", "slots"}),
    "browser": frozenset({"rank", "reward"}),
    "admin": frozenset({"rank", "reward", "slots", "admin"}),
}
MIN_SECRET_LENGTH = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)/(s|sec|second|min|minute)$")


class KeysError(ValueError):
    """A keys file or variable that cannot be used: names the source, the line and what is wrong."""


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``window`` seconds."""

    count: float
    window: int

    def text(self) -> str:
        return f"{self.count:g}/{'s' if self.window == 1 else 'min'}"


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    digest: bytes
    limit: Rate | None = None
    ip_limit: Rate | None = None

    def may(self, action: str) -> bool:
        return action in ROLES[self.role]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _rate(text: str, where: str) -> Rate:
    match = _RATE_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise KeysError(f"{where}: a rate is '<n>/s' or '<n>/min' with n > 0, e.g. limit=200/s (got {text!r})")
    return Rate(float(match.group(1)), 1 if match.group(2).startswith("s") else 60)


def parse_keys(lines: Iterable[str], source: str, min_length: int = MIN_SECRET_LENGTH) -> list[ApiKey]:
    """The keys of ``lines`` (see the module's docstring); :class:`KeysError` names the source and line."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        fields = line.split()
        if len(fields) < 3:
            raise KeysError(f"{where}: expected '<role> <name> <secret> [limit=<n>/s] [ip_limit=<n>/s]'")
        role, name, secret, *options = fields
        if role not in ROLES:
            raise KeysError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not _NAME_RE.match(name):
            raise KeysError(f"{where}: key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if len(secret) < min_length:
            raise KeysError(
                f"{where}: the secret of key {name!r} is shorter than {min_length} characters (generate "
                "one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        limits: dict[str, Rate] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in ("limit", "ip_limit"):
                raise KeysError(f"{where}: unknown option {option!r}; options: limit=<n>/s, ip_limit=<n>/s")
            limits[key] = _rate(value, where)
        keys.append(ApiKey(name, role, _digest(secret), limits.get("limit"), limits.get("ip_limit")))
    return keys


class Keys:
    """The service's keys, found by their secret."""

    def __init__(self, keys: Iterable[ApiKey]):
        self.keys = list(keys)
        self._by_digest: dict[bytes, ApiKey] = {}
        names: set[str] = set()
        for key in self.keys:
            if key.name in names:
                raise KeysError(f"two keys are named {key.name!r}: a name identifies a key in logs and metrics")
            if key.digest in self._by_digest:
                raise KeysError(f"keys {self._by_digest[key.digest].name!r} and {key.name!r} have the same secret")
            names.add(key.name)
            self._by_digest[key.digest] = key

    def find(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, or None (the secret itself is never compared byte by byte)."""
        digest = _digest(secret)
        key = self._by_digest.get(digest)
        return key if key is not None and hmac.compare_digest(digest, key.digest) else None

    def has_role(self, role: str) -> bool:
        return any(k.role == role for k in self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def load_keys(environ: Mapping[str, str] = os.environ) -> Keys:
    """The keys of ``$STOREFRONT_API_KEYS_FILE``, ``$STOREFRONT_API_KEYS`` and ``$STOREFRONT_ADMIN_TOKEN``."""
    keys: list[ApiKey] = []
    path = environ.get("STOREFRONT_API_KEYS_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise KeysError(f"STOREFRONT_API_KEYS_FILE={path}: cannot read it: {exc.strerror or exc}") from None
        keys += parse_keys(text.splitlines(), path)
    inline = environ.get("STOREFRONT_API_KEYS")
    if inline:
        keys += parse_keys(re.split(r"[;\n]", inline), "STOREFRONT_API_KEYS")
    token = environ.get("STOREFRONT_ADMIN_TOKEN")
    if token:  # the older way: any length is taken as it was (docs/security.md asks for 16 characters or more)
        if len(token) < MIN_SECRET_LENGTH:
            log.warning("STOREFRONT_ADMIN_TOKEN is shorter than %d characters: use a longer one", MIN_SECRET_LENGTH)
        keys += parse_keys([f"admin admin-token {token}"], "STOREFRONT_ADMIN_TOKEN", min_length=1)
    return Keys(keys)


def retry_after(window: int, now: float) -> int:
    """Whole seconds until the fixed window that holds ``now`` ends (at least 1)."""
    return max(1, math.ceil((math.floor(now / window) + 1) * window - now))


# --------------------------------------------------------------------------- in a request

_KEY_HEADERS = ("X-Api-Key", "Ocp-Apim-Subscription-Key")


def _given_secret() -> tuple[str | None, bool]:
    """The key the request carries, and whether it came in the URL."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    for header in _KEY_HEADERS:
        if request.headers.get(header):
            return request.headers[header].strip(), False
    if request.args.get("key"):
        return request.args["key"], True
    return None, False


def authorise(action: str, access: Mapping[str, str]) -> ApiKey | None:
    """Check the request's key for ``action`` (``rank``, ``reward``, ``slots``, ``admin``), then its rate limits.

    Returns the key (None for an open action called without one); raises the 401, 403, 404 or 429 ``ApiError``."""
    keys: Keys = current_app.extensions["storefront.keys"]
    if action == "admin" and not keys.has_role("admin"):
        raise ApiError(404, "admin_disabled", "the admin API is disabled: no admin key is configured; add an "
                       "'admin' line to STOREFRONT_API_KEYS_FILE (or set STOREFRONT_ADMIN_TOKEN) and send it as "
                       "'Authorization: Bearer <key>'")  # fmt: skip
    secret, in_url = _given_secret()
    if secret is None:
        if action != "admin" and access.get(action) == "open":
            return None
        metrics.AUTH_REFUSED.labels(action, "missing").inc()
        hint = ("this service has no API keys yet: set STOREFRONT_API_KEYS_FILE (docs/security.md)" if not len(keys)
                else "send your key as 'Authorization: Bearer <key>' (or the X-Api-Key header)")  # fmt: skip
        raise ApiError(401, "unauthorized", f"an API key is needed for {action}: {hint}", headers=_CHALLENGE)
    key = keys.find(secret)
    if key is None:
        metrics.AUTH_REFUSED.labels(action, "wrong").inc()
        raise ApiError(401, "unauthorized", "unknown API key", headers=_CHALLENGE)
    if in_url and key.role != "browser":
        # A secret key in a URL ends up in access logs, proxies and browser history: refuse it, so it is rotated.
        metrics.AUTH_REFUSED.labels(action, "secret_in_url").inc()
        raise ApiError(401, "unauthorized", f"key {key.name!r} is a {key.role} key: send it in the Authorization "
                       "header, never in a URL (only a browser key may come as ?key=); rotate it now",
                       headers=_CHALLENGE)  # fmt: skip
    if not key.may(action):
        metrics.AUTH_REFUSED.labels(action, "forbidden").inc()
        raise ApiError(403, "forbidden", f"key {key.name!r} ({key.role}) may not call {action}")
    _limit(key)
    return key


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="storefront"'}


def _limit(key: ApiKey) -> None:
    if key.limit is None and key.ip_limit is None:
        return
    counter: AccessStore = current_app.extensions["storefront.storage"]
    now = current_app.extensions["storefront.clock"].time()
    checks = [(f"k:{key.name}", key.limit)] if key.limit else []
    if key.ip_limit:
        checks.append((f"ip:{key.name}:{request.remote_addr or '-'}", key.ip_limit))
    for bucket, rate in checks:
        try:
            count = counter.hit(bucket, rate.window, now)
        except STORAGE_ERRORS as exc:
            metrics.STORAGE_ERRORS.labels("rate_limit").inc()
            log.debug("rate limit of key %s not checked: %s", key.name, exc)
            return
        if count > rate.count:
            metrics.RATE_LIMITED.labels(key.name).inc()
            wait = retry_after(rate.window, now)
            per = "key" if bucket.startswith("k:") else "client address"
            raise ApiError(429, "rate_limited", f"key {key.name!r} is over its limit of {rate.text()} per {per}; "
                           f"retry in {wait} s", headers={"Retry-After": str(wait)})  # fmt: skip


# --------------------------------------------------------------------------- pages on other origins (CORS)

#: Paths a page may call from another origin: the store API a page uses (rank and reward) and the snippet.
CORS_PATHS = ("/v1/rank", "/v1/reward")
_CORS_HEADERS = "Content-Type, Authorization, X-Api-Key"


def cors(response: Response, origins: tuple[str, ...]) -> Response:
    """Let a page of a configured origin (``service.cors_origins``) read rank and reward answers, and answer the
    browser's preflight.  Other origins get no CORS headers, so their pages' calls fail in the browser."""
    origin = request.headers.get("Origin")
    if not origin or origin not in origins or request.path not in CORS_PATHS:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response
