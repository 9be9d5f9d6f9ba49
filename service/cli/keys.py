"""``storefront keys``: make API keys, and show the ones ``storefront serve`` made for a data folder.

``storefront serve`` on its embedded Redis, without ``STOREFRONT_API_KEYS_FILE`` or
``STOREFRONT_API_KEYS``, makes ``<data-dir>/keys`` on its first start (a backend and
a browser key, mode 0600) and uses it from then on.  Without
``STOREFRONT_ID_SECRET(_FILE)`` it signs event ids with the store's secret kept in
Redis (shared by every replica on that Redis), cached in ``<data-dir>/id-secret``.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from service.cli.common import DEFAULT_DATA_DIR, CommandError
from service.http.access import ROLES
from service.storage import STORAGE_ERRORS

KEYS_FILE = "keys"
ID_SECRET_FILE = "id-secret"
_PREFIX = {"backend": "sk_", "browser": "pk_", "admin": "ak_"}


def register(top: Any, bench: Any) -> None:
    p = top.add_parser(
        "keys",
        help="make API keys, show serve's",
        description="Print a new key line for a keys file (`storefront keys new ROLE NAME >> keys`), or the secret "
        "of a key in the keys file `storefront serve` uses (`storefront keys show backend`).",
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="print a line for a keys file with a fresh secret")
    new.add_argument("role", choices=sorted(ROLES), help="what the key may do (docs/security.md)")
    new.add_argument("name", help="the key's name, as logs and metrics show it")
    new.add_argument("--limit", help="requests per second (or minute) of this key, e.g. 500/s")
    new.add_argument("--ip-limit", help="requests per client address with this key, e.g. 10/s")
    new.set_defaults(func=cmd_new)
    show = sub.add_parser("show", help="print the secret of a key of the keys file serve uses")
    show.add_argument("what", help="a key's name, or a role (its first key)")
    show.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="serve's data folder (default: %(default)s)")
    show.set_defaults(func=cmd_show)
    init = sub.add_parser("init", help="make a keys file and an event-id secret in a folder, unless they are there",
                          description="Make <folder>/keys (a backend and a browser key) and <folder>/id-secret, "
                          "mode 0600, unless they exist: what serve does in its data folder, for a deployment "
                          "whose replicas share the folder (the compose stack's `secrets` service).")  # fmt: skip
    init.add_argument("folder", help="where to make them")
    init.set_defaults(func=cmd_init)


def new_line(role: str, name: str, limit: str | None = None, ip_limit: str | None = None) -> str:
    """A keys-file line with a fresh 32-character secret."""
    options = "".join(f" {k}={v}" for k, v in (("limit", limit), ("ip_limit", ip_limit)) if v)
    return f"{role} {name} {_PREFIX[role]}{secrets.token_urlsafe(24)}{options}"


def cmd_new(args: argparse.Namespace) -> int:
    from service.http.access import KeysError, parse_keys

    line = new_line(args.role, args.name, args.limit, args.ip_limit)
    try:
        parse_keys([line], "the new key")
    except KeysError as exc:
        raise CommandError(str(exc), 2) from None
    print(line)
    return 0


def keys_path(data_dir: Path) -> Path:
    """The keys file serve uses: ``$STOREFRONT_API_KEYS_FILE``, else the data folder's."""
    return Path(os.environ.get("STOREFRONT_API_KEYS_FILE") or data_dir / KEYS_FILE)


def secret_of(path: Path, what: str) -> str | None:
    """The secret of the first key of ``path`` named ``what`` or of role ``what``; None when there is none."""
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and what in (fields[0], fields[1]):
            return fields[2]
    return None


def cmd_show(args: argparse.Namespace) -> int:
    path = keys_path(Path(args.data_dir))
    try:
        secret = secret_of(path, args.what)
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc} (storefront serve makes it on its first start)", 1) from None
    if secret is None:
        raise CommandError(f"{path}: no key named {args.what!r} and no key of that role", 1)
    print(secret)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = ensure_dev_secrets(folder, {})
    print("\n".join(f"made {m}" for m in made) or f"{folder}: keys and id-secret already there; nothing made")
    return 0


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (never over an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def ensure_keys(data_dir: Path, environ: dict[str, str]) -> list[str]:
    """Point ``environ`` at the data folder's keys file, made on the first start, unless the environment names
    keys of its own.  Returns what it made, for the log."""
    if environ.get("STOREFRONT_API_KEYS_FILE") or environ.get("STOREFRONT_API_KEYS"):
        return []
    path = data_dir / KEYS_FILE
    made = []
    if not path.exists():
        header = "# storefront API keys: <role> <name> <secret> [limit=<n>/s] [ip_limit=<n>/s]\n"
        header += "# made by storefront on its first start; see docs/security.md\n"
        _private_file(path, f"{header}{new_line('backend', 'store-backend')}\n{new_line('browser', 'store-pages')}\n")
        made.append(f"API keys in {path} (a backend and a browser key; `storefront keys show backend`)")
    environ["STOREFRONT_API_KEYS_FILE"] = str(path)
    return made


def ensure_id_secret(data_dir: Path, environ: dict[str, str], redis_url: str, prefix: str) -> str | None:
    """Point ``environ`` at the event-id secret, unless it names one: the store's secret kept in Redis (every
    replica on that Redis shares it), cached in ``<data-dir>/id-secret`` so serve starts while Redis is away.
    Returns a note for the log; raises ``RuntimeError`` when there is neither Redis nor a cached secret."""
    if environ.get("STOREFRONT_ID_SECRET") or environ.get("STOREFRONT_ID_SECRET_FILE"):
        return None

    from service.storage.redis_storage import RedisStorage

    path = data_dir / ID_SECRET_FILE
    environ["STOREFRONT_ID_SECRET_FILE"] = str(path)
    cached = path.read_text().strip() if path.exists() else None
    try:
        storage = RedisStorage.from_url(redis_url, prefix, socket_connect_timeout=5, socket_timeout=5)
        secret = storage.shared_secret("event-ids").decode()
        storage.client.close()
    except STORAGE_ERRORS as exc:
        if cached:
            return f"Redis unreachable ({exc}): event ids signed with the secret cached in {path}"
        raise RuntimeError(f"the event-id secret cannot be read from Redis ({exc}) and none is cached in {path}; "
                           "set STOREFRONT_ID_SECRET, or start when Redis is reachable") from None  # fmt: skip
    if secret == cached:
        return None
    if path.exists():
        path.unlink()
    _private_file(path, secret + "\n")
    return f"event-id secret cached in {path}" + (
        " (it changed in Redis: ids signed before are refused)" if cached else ""
    )


def ensure_dev_secrets(folder: Path, environ: dict[str, str]) -> list[str]:
    """A keys file and an event-id secret in ``folder``, unless they are there (``storefront keys init``)."""
    made = ensure_keys(folder, environ)
    if not environ.get("STOREFRONT_ID_SECRET") and not environ.get("STOREFRONT_ID_SECRET_FILE"):
        path = folder / ID_SECRET_FILE
        if not path.exists():
            _private_file(path, secrets.token_hex(32) + "\n")
            made.append(f"the event-id secret in {path}")
        environ["STOREFRONT_ID_SECRET_FILE"] = str(path)
    return made
