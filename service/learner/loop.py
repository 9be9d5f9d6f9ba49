"""The learner process's loop: join, then run the ladders, until told to stop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from bandit.config import StoreConfig
from bandit.escalation.learner import wants_ladder
from service import metrics
from service.learner.joiner import Joiner
from service.learner.ladder_runner import LadderRunner, LadderRunners
from service.storage import STORAGE_ERRORS

log = logging.getLogger("storefront.learner")
_MAX_BACKOFF = 5.0  # seconds between passes while Redis is away


def wants_ladders(config: StoreConfig) -> bool:
    """True when some slot has a ladder to run: it escalates, or it starts on a learned tier (``tier: gradient``
    learns online even with escalation off)."""
    return any(wants_ladder(slot) for slot in config.slots)


def run_forever(
    joiner: Joiner, interval: float, stop: threading.Event | None = None,
    ladders: LadderRunner | LadderRunners | None = None,
) -> None:  # fmt: skip
    """Join (and run the ladders, when given) in a loop until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    ladder_note = "; running the ladders of the slots whose lease it holds" if ladders else ""
    log.info("learner joining every %.1fs%s", interval, ladder_note)
    # Started by `storefront serve`: stop with it, even if it was killed without a chance to stop us.
    supervisor = int(os.environ.get("STOREFRONT_SUPERVISOR_PID", "0"))
    with ladders.keepalive() if isinstance(ladders, LadderRunners) else contextlib.nullcontext():
        _loop(joiner, interval, stop, ladders, supervisor)
    if ladders is not None:
        try:
            ladders.release()
        except Exception:  # a lease that is not released expires on its own
            log.warning("ladder leases not released; they expire in %.0fs", ladders.lease_ttl)
    log.info("learner stopped")


def _loop(joiner: Joiner, interval: float, stop: threading.Event, ladders: LadderRunner | LadderRunners | None,
          supervisor: int) -> None:  # fmt: skip
    outage: str | None = None  # what failed while Redis is away: one line when it goes, one when it returns
    backoff = interval
    while not stop.is_set():
        if supervisor and os.getppid() != supervisor:
            log.warning("storefront serve (pid %d) is gone; learner stopping", supervisor)
            break
        failed = None
        try:
            stats = joiner.run_once()
            if stats.joined or stats.defaulted:
                log.info("joined %d rewarded and %d defaulted decisions", stats.joined, stats.defaulted)
        except STORAGE_ERRORS as exc:
            metrics.STORAGE_ERRORS.labels("join").inc()
            failed = f"join pass: {exc}"
        except Exception:  # a bug, not an outage: say everything
            metrics.STORAGE_ERRORS.labels("join").inc()
            log.exception("join pass failed; retrying in %.1fs", interval)
        if ladders is not None and failed is None:
            try:
                ladders.run_once()
            except STORAGE_ERRORS as exc:
                metrics.STORAGE_ERRORS.labels("ladder").inc()
                failed = f"ladder pass: {exc}"
                ladders.reset()  # re-read states and cursor: in memory may be ahead of Redis
            except Exception:  # the states in Redis are intact: the next pass starts from them
                metrics.STORAGE_ERRORS.labels("ladder").inc()
                log.exception("ladder pass failed; retrying in %.1fs", interval)
                ladders.reset()
        if failed is not None:
            if outage is None:
                log.error("storage unreachable (%s); retrying with backoff up to %.0fs", failed, _MAX_BACKOFF)
            outage = failed
            backoff = min(_MAX_BACKOFF, backoff * 2)
        else:
            if outage is not None:
                log.info("storage reachable again; the learner goes on")
            outage, backoff = None, interval
        stop.wait(backoff)
