"""Generate the Grafana dashboards and the Prometheus alert rules from :mod:`dashboards.panels`.

    python -m dashboards.build            # rewrite dashboards/grafana/dashboards/*.json and prometheus/alerts.yml
    python -m dashboards.build --check    # exit 1 if a committed file differs from what would be generated

The dashboards are built with Grafana's own grafana-foundation-sdk (a dev
dependency: only this script needs it), so the JSON has the shape Grafana's
dashboard schema gives it; tests/dashboards checks the committed files are up
to date and type-checks them against the schema package ``@grafana/schema``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from dashboards import alert_tests
from dashboards import panels as spec

ROOT = Path(__file__).resolve().parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
ALERTS_FILE = ROOT / "prometheus" / "alerts.yml"
ALERT_TESTS_FILE = ROOT / "prometheus" / "alerts.test.yml"


def _datasource() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid=spec.DATASOURCE_UID)


def _panel(panel: spec.Panel) -> Any:
    from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
    from grafana_foundation_sdk.builders.common import VizLegendOptions
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement

    kinds: dict[str, Any] = {"timeseries": timeseries.Panel, "stat": stat.Panel, "state-timeline": statetimeline.Panel}
    builder = kinds[panel.kind]()
    builder = (
        builder.title(panel.title)
        .description(panel.description)
        .datasource(_datasource())
        .unit(panel.unit)
        .height(panel.height)
        .span(panel.width)
    )
    if panel.min is not None:
        builder = builder.min(panel.min)
    if panel.max is not None:
        builder = builder.max(panel.max)
    if panel.kind == "timeseries":
        legend = VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.TABLE)
        builder = builder.legend(legend.placement(LegendPlacement.BOTTOM).calcs(["lastNotNull", "mean"]))
    elif panel.kind == "state-timeline":
        legend = VizLegendOptions().show_legend(False).display_mode(LegendDisplayMode.LIST)
        builder = builder.legend(legend.placement(LegendPlacement.BOTTOM)).merge_values(True)
    for i, query in enumerate(panel.queries):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend or "__auto")
        builder = builder.with_target(target.ref_id(chr(ord("A") + i)).range())
    return builder


def _variable(name: str) -> Any:
    from grafana_foundation_sdk.builders.dashboard import QueryVariable
    from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

    return (
        QueryVariable(name)
        .label(name)
        .description(f"Filter by {name} (several may be chosen).")
        .datasource(_datasource())
        .query(f"label_values(storefront_decisions_total, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def dashboard_json(board: spec.Dashboard) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model (plain dicts, keys sorted)."""
    from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, Dashboard
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

    builder = (
        Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(list(board.tags))
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
    )
    for name in board.variables:
        builder = builder.with_variable(_variable(name))
    for annotation in board.annotations:
        builder = builder.annotation(
            AnnotationQuery().name(annotation.name).datasource(_datasource()).enable(True).icon_color(annotation.color)
        )
    for panel in board.panels:
        builder = builder.with_panel(_panel(panel))
    text = json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True)
    out: dict[str, Any] = json.loads(text)
    # `style` (dark/light) left the dashboard schema in Grafana 11; the SDK still writes it.
    out.pop("style", None)
    # The query of a Prometheus annotation goes in `target` (where Grafana's Prometheus data source reads it and
    # where the schema's AnnotationQuery has it); the SDK's annotation builder only knows Grafana's own targets.
    for item, annotation in zip(out.get("annotations", {}).get("list", []), board.annotations, strict=True):
        item["target"] = {"refId": "Anno", "expr": annotation.expr, "interval": "1m", "legendFormat": annotation.title}
    # The SDK writes an interval variable's fields (auto, auto_count, auto_min) and a placeholder id into every
    # variable; a query variable has none of them in the dashboard schema.
    for variable in out.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            for key in ("auto", "auto_count", "auto_min", "id"):
                variable.pop(key, None)
    return out


def alerts_rules() -> dict[str, Any]:
    """The Prometheus rule file: recording rules for the reward baselines, then the alerts."""
    return {
        "groups": [
            {
                "name": "storefront-recordings",
                "rules": [{"record": r.record, "expr": r.expr} for r in spec.RECORDINGS],
            },
            {
                "name": "storefront-alerts",
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.duration,
                        "labels": {"severity": a.severity},
                        "annotations": {"summary": a.summary, "description": a.description},
                    }
                    for a in spec.ALERTS
                ],
            },
        ]
    }


def rendered() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {
        DASHBOARD_DIR / f"{board.uid}.json": json.dumps(dashboard_json(board), indent=2, ensure_ascii=False) + "\n"
        for board in spec.DASHBOARDS
    }
    header = "# Generated by `python -m dashboards.build` from dashboards/panels.py; edit that, not this.\n"
    files[ALERTS_FILE] = header + yaml.safe_dump(alerts_rules(), sort_keys=False, width=120, allow_unicode=True)
    tests = alert_tests.promtool_tests(ALERTS_FILE.name)
    files[ALERT_TESTS_FILE] = (
        "# Generated by `python -m dashboards.build` from dashboards/alert_tests.py; run: promtool test rules "
        "alerts.test.yml\n" + yaml.safe_dump(tests, sort_keys=False, width=120, allow_unicode=True)
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT.parent)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
