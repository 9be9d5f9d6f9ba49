"""A live service: `storefront serve` in a subprocess (gunicorn + learner + Redis), as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import STORE_CONFIG
from tests.support import KEYS_ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveService:
    url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def storefront(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run another `storefront` command against this service's data and Redis."""
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args, "--data-dir", str(self.data_dir)],
            env=self.env, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def export_until(self, out: Path, expected: set[tuple[str, str]], timeout: float) -> list[dict[str, Any]]:
        """Export the joined log every second until it holds every ``(event id, slot)`` of ``expected`` (or the
        time is up); returns its records."""
        deadline = time.monotonic() + timeout
        while True:
            self.storefront("export", "--out", str(out))
            records = [json.loads(line) for line in out.read_text().splitlines()]
            if {(r["event_id"], r["slot"]) for r in records} >= expected or time.monotonic() > deadline:
                return records
            time.sleep(1)


def start_service(
    tmp: Path,
    config: Path,
    *extra: str,
    redis_url: str | None = None,
    prefix: str | None = None,
    keys: str | None = KEYS_ENV,
    env_extra: dict[str, str] | None = None,
) -> LiveService:
    """``keys``: the service's ``STOREFRONT_API_KEYS`` (None: serve makes its own in the data folder);
    ``env_extra``: more of its environment."""
    port = free_port()
    drop = ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "STOREFRONT_API_KEYS", "STOREFRONT_API_KEYS_FILE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if keys is not None:
        env["STOREFRONT_API_KEYS"] = keys
    env.update(env_extra or {})
    if redis_url:  # the same tests against an external Redis, under a key prefix of their own (or a shared one)
        env["REDIS_URL"] = redis_url
        env["STOREFRONT_REDIS_PREFIX"] = prefix or f"itest:{uuid.uuid4().hex[:10]}:"
    log_path = tmp / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", str(config), "--bind", f"127.0.0.1:{port}",
         "--data-dir", str(tmp / "data"), "--workers", "2", "--learn-interval", "0.2", "--join-grace", "0.2", *extra],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    service = LiveService(f"http://127.0.0.1:{port}", tmp / "data", env, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storefront serve exited with {process.returncode}:\n{service.log()}")
        try:
            if requests.get(f"{service.url}/readyz", timeout=1).status_code == 200:
                return service
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        time.sleep(0.1)
    stop_service(service)
    raise RuntimeError(f"storefront serve did not become ready:\n{service.log()}")


def stop_service(service: LiveService) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = start_service(tmp_path_factory.mktemp("live"), STORE_CONFIG, redis_url=os.environ.get("REDIS_URL"))
    yield service
    stop_service(service)
