"""The committed dashboards and rules: up to date, in Grafana's schema, about declared metrics; the compose stack.

Tools from the test set-up: promtool (Debian's prometheus), docker-compose (Debian's package, which validates
a file without a Docker engine) and, for the schema, TypeScript with ``@grafana/schema`` installed by
``npm ci`` in dashboards/schema (scripts/test.sh).  Their running against live data is
tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from dashboards import build, panels
from service import metrics

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "dashboards" / "schema"
SETUP_HINT = "run `bash scripts/test.sh` once (it installs the tools the test set-up needs)"


def test_committed_files_are_what_the_build_generates() -> None:
    stale = [str(p) for p, text in build.rendered().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python -m dashboards.build`: out of date: {stale}"


def _declared() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name
            kind = value._type
            names.add(name)
            if kind == "counter":
                names.add(name + "_total")
            if kind in ("histogram", "summary"):
                names.update({name + "_sum", name + "_count", name + "_bucket"})
    return names


def test_every_query_names_only_declared_metrics_and_every_panel_is_described() -> None:
    declared = _declared() | {r.record for r in panels.RECORDINGS}
    exprs = [q.expr for b in panels.DASHBOARDS for p in b.panels for q in p.queries]
    exprs += [a.expr for b in panels.DASHBOARDS for a in b.annotations] + [a.expr for a in panels.ALERTS]
    used = {m for e in exprs for m in re.findall(r"storefront[:_][a-z0-9_:]+", e)}
    assert used - declared == set()
    for board in panels.DASHBOARDS:
        for panel in board.panels:
            assert panel.description and panel.unit and panel.queries, panel.title
    titles = [p.title for b in panels.DASHBOARDS for p in b.panels]
    assert len(titles) == len(set(titles))


def test_dashboards_have_variables_units_and_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((ROOT / "dashboards/grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for path in sorted((ROOT / "dashboards/grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        assert {v["name"] for v in board["templating"]["list"]} >= {"slot"}, path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert panel["description"] and panel["targets"], panel["title"]


def _typecheck(board: dict[str, object], tmp: Path) -> subprocess.CompletedProcess[str]:
    """tsc --strict on the dashboard as a ``Dashboard`` of @grafana/schema (object literal: no unknown keys)."""
    board = dict(board)
    annotations: list[object] = board.pop("annotations", {}).get("list", [])  # type: ignore[attr-defined]
    body = json.dumps({**board, "annotations": "@ANNOTATIONS@"}).replace('"@ANNOTATIONS@"', "{ list: annotations }")
    source = (
        "import type { Dashboard, AnnotationQuery, DataQuery } from '@grafana/schema';\n"
        "// @grafana/schema has no Prometheus query type; these are the fields Grafana's Prometheus source reads.\n"
        "interface PrometheusQuery extends DataQuery { expr: string; interval?: string; legendFormat?: string }\n"
        f"const annotations: Array<AnnotationQuery<PrometheusQuery>> = {json.dumps(annotations)};\n"
        # One object literal (a spread would skip the check for unknown top-level keys).
        f"export const dashboard: Dashboard = {body};\n"
    )
    check = SCHEMA_DIR / f"check-{tmp.name}.ts"
    check.write_text(source)
    try:
        return subprocess.run(
            [str(SCHEMA_DIR / "node_modules/.bin/tsc"), "--noEmit", "--strict", "--skipLibCheck",
             "--module", "esnext", "--moduleResolution", "bundler", check.name],
            cwd=SCHEMA_DIR, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        check.unlink()


@pytest.fixture(scope="module")
def tsc() -> None:
    if not (SCHEMA_DIR / "node_modules/.bin/tsc").exists() or not (SCHEMA_DIR / "node_modules/@grafana").exists():
        pytest.fail(f"TypeScript and @grafana/schema are not installed in {SCHEMA_DIR}: {SETUP_HINT}")


def test_each_dashboard_matches_grafanas_published_schema(tsc: None, tmp_path: Path) -> None:
    for path in sorted((ROOT / "dashboards/grafana/dashboards").glob("*.json")):
        done = _typecheck(json.loads(path.read_text()), tmp_path)
        assert done.returncode == 0, f"{path.name}:\n{done.stdout}{done.stderr}"


def test_the_schema_check_refuses_a_broken_dashboard(tsc: None, tmp_path: Path) -> None:
    board = json.loads((ROOT / "dashboards/grafana/dashboards/storefront-overview.json").read_text())
    wrong_type = json.loads(json.dumps(board))
    wrong_type["panels"][0]["gridPos"]["h"] = "eight"  # a string where the schema wants a number
    done = _typecheck(wrong_type, tmp_path)
    assert done.returncode != 0 and "Type 'string' is not assignable to type 'number'" in done.stdout, done.stdout
    misspelt = {**board, "refersh": "30s"}
    done = _typecheck(misspelt, tmp_path)
    assert done.returncode != 0 and '"refersh"\' does not exist' in done.stdout, done.stdout


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    if not shutil.which("promtool"):
        pytest.fail(f"promtool not on PATH: {SETUP_HINT}")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=build.ALERTS_FILE.parent)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    from dashboards.alert_tests import CASES

    for alert in panels.ALERTS:
        cases = [c for c in CASES if c.alert == alert.name]
        assert any(c.fires for c in cases) and any(not c.fires for c in cases), alert.name


def test_docker_compose_config_is_valid() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail(f"docker-compose not on PATH: {SETUP_HINT}")
    done = subprocess.run([compose, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) >= {"redis", "api", "learner", "prometheus", "grafana"}
    assert "--appendonly" in services["redis"]["command"]
    assert "ports" in services["api"] and "container_name" not in services["api"]  # `--scale api=N` works
    mounts = " ".join(str(v) for v in services["grafana"]["volumes"])
    assert "provisioning" in mounts and "dashboards" in mounts
    prometheus = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["storefront-api"]["dns_sd_configs"][0]["names"] == ["api"]  # every replica of the api service
    assert jobs["storefront-learner"]["static_configs"][0]["targets"] == ["learner:9100"]
