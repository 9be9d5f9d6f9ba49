"""The embedded redis-server does not outlive the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

STARTER = """
import sys, time
from service.storage.embedded import EmbeddedRedis
redis = EmbeddedRedis(sys.argv[1]).start()
print(redis.process.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_redis_server_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / "redis")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert parent.stdout is not None
    redis_pid = int(parent.stdout.readline())
    try:
        assert alive(redis_pid)
        parent.send_signal(signal.SIGKILL)  # no chance to stop its children
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(redis_pid), "redis-server outlived the process that started it"
    finally:
        if alive(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)
