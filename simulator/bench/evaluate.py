"""``storefront bench evaluate``: ``storefront evaluate`` on a month of a store's hero — time and peak memory.

The simulator logs ``--records`` hero decisions of the example store under
its rules (the VR store's scenario: 31 candidates, 10% exploration) straight
to a joined-log JSONL file, as ``storefront export`` writes it.  Then two
child processes run, one after the other, on that file:

- the anchor: reading the log only (``json.loads`` of every line), the least
  any evaluation must do;
- ``storefront evaluate --log … --policy uniform`` with all four estimators
  (IPS, SNIPS, DM, DR with its cross-fitted reward model), uniform being the
  hardest target for the weights.

Each child's wall time and peak resident memory (the kernel's ``ru_maxrss``
of that child) are printed, with the ratio of evaluate to the anchor; past ``--timeout`` evaluate
is stopped and reported as over it, with the peak seen so far.  Targets (issue 11,
reported, not asserted): ≤ 60 s and ≤ 2 GB at 1,000,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from bandit.config import load_config
from simulator.runner import Arm, simulate
from simulator.scenario import load_scenario

TARGET_SECONDS = 60.0
TARGET_BYTES = 2 << 30
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_ANCHOR = (
    "import json, sys\n"
    "n = 0\n"
    "for line in open(sys.argv[1], encoding='utf-8'):\n"
    "    json.loads(line)\n"
    "    n += 1\n"
    "print(n)\n"
)


class LogWriter:
    """A learner hook that writes one slot's joined records to a JSONL file (the simulator as a log generator)."""

    def __init__(self, out: IO[str], slot: str):
        self.out = out
        self.slot = slot
        self.written = 0

    def observe(self, records: Sequence[Mapping[str, Any]], now: float) -> None:
        for record in records:
            if record.get("slot") == self.slot:
                self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self.written += 1

    def policies(self, now: float) -> dict[str, Any]:
        return {}


def register(bench: Any) -> None:
    p = bench.add_parser(
        "evaluate",
        help="storefront evaluate on a month of a store's hero (1,000,000 records): time and peak memory",
        description="Log --records hero decisions of the example store with the simulator, then time "
        "`storefront evaluate` (all four estimators) on them against reading the log alone, each in its own "
        f"process; print seconds and peak memory (targets: ≤ {TARGET_SECONDS:.0f} s, ≤ 2 GB).",
    )
    p.add_argument("--records", type=int, default=1_000_000, help="hero decisions logged (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default: %(default)s)")
    p.add_argument("--keep", help="write the generated log here (and keep it) instead of a temporary folder")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="stop evaluate after this many seconds, reported as over (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run_bench_evaluate)


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``), in bytes; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # exited between two polls
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) * 1024


def _child(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run a child process; its wall time and peak RSS (the kernel's figure for that child, from ``wait4``).
    Past ``timeout`` seconds it is killed and reported as timed out, with the peak polled until then."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                peak = _peak_rss(process.pid)
                process.kill()
                os.wait4(process.pid, 0)
                return {"seconds": round(time.perf_counter() - started, 2), "peak_bytes": peak, "timed_out": True,
                        "stdout": ""}  # fmt: skip
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        process.returncode = code  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise SystemExit(f"{' '.join(argv[:4])}… failed ({code}):\n{err.read()[-2000:]}")
        return {"seconds": round(seconds, 2), "peak_bytes": usage.ru_maxrss * 1024, "timed_out": False,
                "stdout": out.read()}  # fmt: skip


def run_bench_evaluate(args: argparse.Namespace) -> int:
    config_path = EXAMPLES / "storefront.yaml"
    config = load_config(config_path)
    slot = config.slots[0].name
    folder = Path(args.keep).parent if args.keep else Path(tempfile.mkdtemp(prefix="storefront-bench-evaluate-"))
    log_path = Path(args.keep) if args.keep else folder / "joined.jsonl"
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as out:
        writer = LogWriter(out, slot)
        arm = Arm("logged", "config", config, learner=writer)
        simulate(config, load_scenario("vr-store", config), args.records, args.seed, arms=[arm])
    generated = time.perf_counter() - started
    # The anchor runs first, so the RUSAGE_CHILDREN maximum read after evaluate is evaluate's if it is larger.
    timeout = getattr(args, "timeout", 900.0)
    anchor = _child([sys.executable, "-c", _ANCHOR, str(log_path)], timeout)
    evaluate = _child([sys.executable, "-m", "service.cli", "evaluate", "--log", str(log_path), "--policy", "uniform",
                       "--config", str(config_path), "--slot", slot, "--json"], timeout)  # fmt: skip
    output = evaluate.pop("stdout")
    estimates = json.loads(output)["slots"][slot] if output else {}
    anchor.pop("stdout")
    result = {
        "records": writer.written,
        "log_bytes": log_path.stat().st_size,
        "generate_seconds": round(generated, 1),
        "anchor_read_only": anchor,
        "evaluate": evaluate,
        "ratio_seconds": round(evaluate["seconds"] / max(anchor["seconds"], 1e-9), 2),
        "estimators": sorted(e["estimator"] for e in estimates.get("estimates", [])),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "targets": {"seconds": TARGET_SECONDS, "peak_bytes": TARGET_BYTES},
    }
    if not args.keep:
        log_path.unlink()
        folder.rmdir()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    mb = 1 << 20
    print(f"storefront evaluate on {result['records']:,} joined {slot} records of the example store "
          f"({result['log_bytes'] / mb:,.0f} MB of JSONL; logged by the simulator in {generated:.0f} s); "
          f"{result['cores']} cores, Python {result['python']}")  # fmt: skip
    print(f"  read the log only (anchor)        {anchor['seconds']:7.1f} s   peak {anchor['peak_bytes'] / mb:7,.0f} MB")
    over = " (stopped: over --timeout)" if evaluate["timed_out"] else ""
    names = "/".join(result["estimators"]) or "all four"
    print(f"  evaluate, {names:<24}{evaluate['seconds']:7.1f} s   peak {evaluate['peak_bytes'] / mb:7,.0f} MB   "
          f"({result['ratio_seconds']:.1f}× the anchor's time){over}")  # fmt: skip
    ok_t = "met" if evaluate["seconds"] <= TARGET_SECONDS and not evaluate["timed_out"] else "MISSED"
    ok_m = "met" if evaluate["peak_bytes"] <= TARGET_BYTES else "MISSED"
    scale = "" if result["records"] >= 1_000_000 else f" (this run: {result['records']:,}; judge at 1,000,000)"
    print(f"  targets at 1,000,000 records{scale}: ≤ {TARGET_SECONDS:.0f} s {ok_t}; ≤ 2 GB {ok_m}")
    return 0
