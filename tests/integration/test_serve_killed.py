"""`storefront serve` killed outright (SIGKILL, the OOM killer) leaves nothing running."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import start_service


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_sigkill_of_serve_stops_gunicorn_redis_and_the_learner(tmp_path: Path) -> None:
    service = start_service(tmp_path, ROOT / "examples" / "storefront.yaml")
    children = children_of(service.process.pid)  # gunicorn master, learner, embedded redis-server
    assert len(children) >= 3, children
    everything = children + [c for child in children for c in children_of(child)]  # + gunicorn workers
    try:
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait()
        deadline = time.monotonic() + 30
        while any(alive(p) for p in everything) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in everything if alive(p)]
        assert not left, f"still running after serve was killed: {left}"
    finally:
        for pid in everything:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
