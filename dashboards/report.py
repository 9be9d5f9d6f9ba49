"""``storefront report --prometheus URL --out DIR``: the overview's key panels as PNG, without Grafana.

The same queries as the Grafana dashboards (:mod:`dashboards.panels`, panels
marked ``report``), run over Prometheus's HTTP API (``query_range``) and drawn
with matplotlib, one PNG per panel, with ``report.md`` listing each panel's
outcome.  A Prometheus that cannot be reached, or a panel with no data, is
said per panel and makes the exit status 1; nothing raises a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards.panels import DASHBOARDS, Panel, substitute


@dataclass
class Series:
    label: str
    times: list[float]
    values: list[float]


@dataclass
class PanelResult:
    panel: Panel
    series: list[Series] = field(default_factory=list)
    error: str | None = None
    image: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return f"error: {self.error}"
        return f"{len(self.series)} series" if self.series else "no data"


class PrometheusError(Exception):
    """Prometheus could not answer (unreachable, an HTTP error, or an error in its JSON)."""


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 3h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * scale


def _legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def query_range(base: str, expr: str, start: float, end: float, step: float, timeout: float) -> list[dict[str, Any]]:
    """One ``/api/v1/query_range`` call; its ``result`` list."""
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    url = f"{base.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read().decode("utf-8")).get("error", "")
        except (ValueError, OSError):
            detail = ""
        raise PrometheusError(f"HTTP {exc.code} from Prometheus{': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrometheusError(f"cannot reach Prometheus at {base}: {reason}") from None
    except ValueError:
        raise PrometheusError("Prometheus answered with something that is not JSON") from None
    if body.get("status") != "success":
        raise PrometheusError(str(body.get("error", "query failed")))
    result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
    return result


def fetch(panel: Panel, base: str, start: float, end: float, step: float, rate: str, timeout: float) -> PanelResult:
    out = PanelResult(panel)
    for query in panel.queries:
        try:
            result = query_range(base, substitute(query.expr, rate_interval=rate), start, end, step, timeout)
        except PrometheusError as exc:
            out.error = str(exc)
            return out
        for item in result:
            points = [(float(t), float(v)) for t, v in item.get("values", [])]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if points:
                times, values = zip(*points, strict=True)
                out.series.append(Series(_legend(query.legend, item.get("metric", {})), list(times), list(values)))
    return out


def draw(result: PanelResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    for series in result.series[:20]:
        stamps: Any = [datetime.fromtimestamp(t) for t in series.times]
        ax.plot(stamps, series.values, label=series.label, linewidth=1.5)
    ax.set_title(result.panel.title)
    ax.set_ylabel(_UNIT_LABELS.get(result.panel.unit, ""))
    if result.panel.unit == "percentunit":
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    if result.panel.min is not None:
        ax.set_ylim(bottom=result.panel.min)
    if len(result.series) > 1:
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# Grafana's unit ids, as an axis label.
_UNIT_LABELS = {"s": "seconds", "ops": "per second", "reqps": "per second", "percentunit": ""}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def run(base: str, out: Path, span: float, end: float | None, rate: str, timeout: float) -> tuple[int, list[str]]:
    """Fetch and draw every report panel; (exit status, one line per panel)."""
    end = time.time() if end is None else end
    start = end - span
    step = max(1.0, span / 300)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for board in DASHBOARDS:
        for panel in board.panels:
            if panel.report:
                result = fetch(panel, base, start, end, step, rate, timeout)
                if result.series:
                    name = f"{board.uid}--{_slug(panel.title)}.png"
                    draw(result, out / name)
                    result.image = name
                results.append((board, result))
    lines = [f"{board.title} / {r.panel.title}: {r.status}" for board, r in results]
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end))
    md = [f"# Storefront report\n\nPrometheus {base}, {span:g} s to {until} (rate interval {rate}).\n"]
    for board, r in results:
        md.append(f"## {board.title}: {r.panel.title}\n\n{r.panel.description}\n\n{r.status}\n")
        if r.image:
            md.append(f"![{r.panel.title}]({r.image})\n")
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    ok = all(r.series and not r.error for _, r in results)
    return (0 if ok else 1), lines


def register(top: Any, bench: Any) -> None:
    p = top.add_parser(
        "report",
        help="render the dashboards' key panels to PNG from Prometheus",
        description="Query Prometheus with the Grafana dashboards' own queries and draw the overview's key panels "
        "to PNG (with report.md), for a look at the live state where Grafana is not at hand. Exit status 1 when "
        "Prometheus cannot be reached or a panel has no data.",
    )
    p.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    p.add_argument("--range", dest="span", type=_duration, default=_duration("1h"), help="time span (default 1h)")
    p.add_argument("--end", type=float, default=None, help="end of the span, Unix seconds (default: now)")
    p.add_argument("--rate-interval", default="1m", help="window of rate() (Grafana's $__rate_interval; default 1m)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per query (default 10)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("storefront report needs matplotlib: pip install 'storefront-bandit[plot]'")
        return 2
    status, lines = run(args.prometheus, Path(args.out), args.span, args.end, args.rate_interval, args.timeout)
    for line in lines:
        print(line)
    print(f"report: {Path(args.out) / 'report.md'}" + ("" if status == 0 else " (some panels have no data)"))
    return status
