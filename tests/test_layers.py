"""The layer rule (pyproject.toml, [tool.importlinter]) holds, and `lint-imports` refuses each kind of violation.

The check itself runs in scripts/test.sh; these tests show it is not vacuous:
a copy of the tree with one bad import added must break the named contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's packages before the editable install's
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("bandit/page.py", "import service.metrics", "service is not allowed|bandit is not allowed to import service"),
        ("service/http/ops.py", "import simulator.runner", "service is not allowed to import simulator"),
        ("simulator/report.py", "import service.storage", "simulator is not allowed to import service"),
        ("bandit/config/model.py", "import flask", "bandit.config.model -> flask"),
        ("service/http/runtime.py", "from service.http import app", "No cycles are allowed in service.http"),
        ("bandit/policies/base.py", "import bandit.escalation.ladder", "No cycles are allowed in bandit"),
    ],
)
def test_a_violation_breaks_the_build(tmp_path: Path, module: str, line: str, broken: str) -> None:
    for name in ("bandit", "service", "simulator"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as fh:
        fh.write(f"\n{line}  # the violation under test\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert any(part in result.stdout for part in broken.split("|")), result.stdout
