"""`storefront report` when Prometheus cannot answer: said per panel, exit status 1, no traceback.

With data, and with a span that has none, against a real Prometheus: tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dashboards import panels
from service.cli import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is: nothing listens there


def test_an_unreachable_prometheus_is_reported_per_panel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    status = main(["report", "--prometheus", url, "--out", str(tmp_path / "out"), "--timeout", "2"])
    out = capsys.readouterr().out
    assert status == 1
    lines = [line for line in out.splitlines() if " / " in line]
    assert len(lines) == sum(p.report for b in panels.DASHBOARDS for p in b.panels)
    assert all(f"cannot reach Prometheus at {url}" in line for line in lines), out
    assert not list((tmp_path / "out").glob("*.png"))
    assert "cannot reach Prometheus" in (tmp_path / "out" / "report.md").read_text()


def test_a_bad_duration_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "--prometheus", "http://127.0.0.1:9", "--range", "ten minutes"])
    assert exc.value.code == 2
    assert "not a duration: 'ten minutes'" in capsys.readouterr().err
