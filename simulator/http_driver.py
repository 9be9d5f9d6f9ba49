"""``--target`` mode: drive a live service over HTTP with the simulated shoppers.

Each page view is a real ``POST /v1/rank``; what the shopper does with each
slot's item comes from the same truth and the same common random numbers as
in process, and each resulting event (``click``, ``add_to_cart``,
``purchase`` with its revenue) is posted to ``POST /v1/reward`` after its
simulated delay times ``time_scale`` of wall-clock time.

Only the config's own policy can be driven live.  The baselines (oracle,
uniform, VW peers) and the config itself run in process on the same traffic,
so the report puts the live service beside its in-process twin: their
expected rewards should agree within sampling noise.

Late events: the service's window is real time.  With ``time_scale < 1``
delays shrink but the window does not, so an event that is late in simulated
time (delay beyond the config's window) is still posted — to exercise the
service — but is not credited, exactly as in process; the service's own
``410`` answers are counted in the notes.
"""

from __future__ import annotations

import heapq
import http.client
import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from bandit.config import StoreConfig
from bandit.eventlog.events import reward_value
from simulator.runner import Arm, ArmStats, SimulationResult, Traffic, bucket_hours, simulate, standard_arms
from simulator.scenario import Scenario


class HTTPError(RuntimeError):
    """The service answered something the contract does not allow, or could not be reached."""


class _Client:
    """A keep-alive JSON client over ``http.client`` (no third-party dependency)."""

    def __init__(self, target: str, timeout: float = 10.0, api_key: str | None = None):
        parts = urlsplit(target if "://" in target else f"http://{target}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HTTPError(f"--target must be a URL such as http://127.0.0.1:8000 (got {target!r})")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        payload = json.dumps(body).encode()
        headers = self.headers
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self.prefix + path, payload, headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise HTTPError(f"POST {path}: cannot reach {self.host}:{self.port}: {exc}") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        return response.status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _key_hint(status: int) -> str:
    if status in (401, 403):
        return " (pass --api-key with a backend key of the service, e.g. `storefront keys show backend`)"
    return ""


def simulate_http(
    config: StoreConfig,
    scenario: Scenario,
    target: str,
    events: int,
    seed: int = 0,
    peers: Sequence[str] = ("squarecb",),
    time_scale: float = 0.001,
    progress: Callable[[int], None] | None = None,
    timeout: float = 10.0,
    api_key: str | None = None,
) -> SimulationResult:
    """Drive ``target`` with ``events`` page views, then run the baselines in process on the same traffic.

    The live service must serve ``config`` (the same file); its decisions are
    arm ``live`` in the result.  ``api_key``: a backend key of the service (the
    simulated store posts purchases with their revenue, which a browser key may not).
    """
    if time_scale < 0:
        raise ValueError("time_scale must be ≥ 0")
    traffic = Traffic(config, scenario, events, seed)
    truth = traffic.truth
    client = _Client(target, timeout, api_key)
    stats = ArmStats(len(truth.slots), len(truth.items))
    window = truth.window
    full_catalog = tuple(truth.items)
    due: list[tuple[float, int, bool, dict[str, Any]]] = []  # (wall time, sequence, late in sim time, body)
    accepted: dict[tuple[str, str], dict[str, Any]] = {}
    where: dict[tuple[str, str], tuple[int, int]] = {}  # (event id, slot) → (bucket, slot index)
    answers = {"accepted": 0, "duplicate": 0, "late": 0, "unknown": 0}
    sequence = 0

    def post_due(until: float) -> None:
        while due and due[0][0] <= until:
            _, _, late, body = heapq.heappop(due)
            status, data = client.post("/v1/reward", body)
            key = (body["event_id"], body["slot"])
            if status == 202:
                answer = data.get("status", "accepted") if isinstance(data, dict) else "accepted"
                answers[answer if answer in answers else "accepted"] += 1
                if not late:
                    event = body["event"]
                    accepted.setdefault(key, {})[event] = {"revenue": body["revenue"]} if "revenue" in body else {}
            elif status == 410:
                answers["late"] += 1
            elif status == 404:
                answers["unknown"] += 1
            else:
                raise HTTPError(f"POST /v1/reward answered {status}: {data}{_key_hint(status)}")

    try:
        for batch in traffic.batches():
            for j in range(batch.n):
                post_due(time.monotonic())
                request: dict[str, Any] = {"context": batch.contexts[j]}
                candidates = batch.candidates[j]
                if candidates is not None and candidates != full_catalog:
                    request["candidates"] = list(candidates)
                status, data = client.post("/v1/rank", request)
                if status != 200 or not isinstance(data, dict) or "slots" not in data:
                    raise HTTPError(f"POST /v1/rank answered {status}: {data}{_key_hint(status)}")
                event_id = data["event_id"]
                now = time.monotonic()
                bucket = batch.buckets[j]
                for entry in data["slots"]:
                    s = truth.slot_index[entry["slot"]]
                    if entry.get("item") is None:
                        stats.unfilled[s] += 1
                        continue
                    i = truth.item_index[entry["item"]]
                    _, happened, late = traffic.outcome(batch, j, i, s)
                    expected = float(batch.truth.expected[j, i, s])
                    stats.record(bucket, s, i, entry.get("tier", "?"), expected, 0.0, late)
                    where[(event_id, entry["slot"])] = (bucket, s)
                    for name, info in happened.items():
                        body = {"event_id": event_id, "slot": entry["slot"], "event": name}
                        if "revenue" in info:
                            body["revenue"] = info["revenue"]
                        sequence += 1
                        heapq.heappush(due, (now + info["delay"] * time_scale, sequence, info["delay"] > window, body))
                stats.pages += 1
                if progress is not None:
                    progress(1)
        while due:
            time.sleep(max(0.0, min(1.0, due[0][0] - time.monotonic())))
            post_due(time.monotonic())
    finally:
        client.close()
    # what the live service was sent inside the window, valued by the config's reward rule
    for key, posted in accepted.items():
        bucket, s = where[key]
        stats.realised[bucket, s] += reward_value(config.reward, posted)
    defaulted = len(where) - len(accepted)
    if config.reward.default:
        for key, (bucket, s) in where.items():
            if key not in accepted:
                stats.realised[bucket, s] += config.reward.default

    arms = standard_arms(config, seed, peers)
    in_process = simulate(config, scenario, events, seed, arms=arms, progress=progress)
    live = Arm("live", "live", config, description=target)
    ordered = [arms[0], live, *arms[1:]]
    notes = [
        f"live service: {events:,} ranks, reward delays × {time_scale:g} of wall time",
        f"reward posts: {answers['accepted']} accepted, {answers['duplicate']} duplicate, "
        f"{answers['late']} refused as late (410), {answers['unknown']} unknown event (404); "
        f"{defaulted} slot decisions with nothing credited",
        "'config' is the same config run in process on the same shoppers: compare its expected reward with 'live'",
    ]
    return SimulationResult(
        config=config,
        scenario=scenario,
        events=events,
        seed=seed,
        mode="http",
        arms=ordered,
        stats={"live": stats, **in_process.stats},
        bucket_hours=bucket_hours(traffic),
        drift_hours=in_process.drift_hours,
        notes=notes,
    )
