"""An attacker who floods the API with unique values must not grow the metrics' label sets (a series per value
would exhaust the service's memory and Prometheus's): every label is drawn from the config or from fixed sets."""

from __future__ import annotations

import random
import uuid

from flask.testing import FlaskClient

from tests.support import keyed


def series(client: FlaskClient) -> set[str]:
    text = client.get("/metrics").get_data(as_text=True)
    return {line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def flood(client: FlaskClient, rng: random.Random, n: int) -> None:
    for _ in range(n):
        junk = uuid.UUID(int=rng.getrandbits(128)).hex
        client.get(f"/{junk}")
        client.post(f"/v1/{junk}", json={})
        client.post("/v1/rank", json={"context": {"device": junk, "country": junk, junk: 1}})
        client.post("/v1/rank", json={"context": {"device": "quest"}, "slots": [junk], "exclude": [junk]})
        client.post("/v1/rank", json={"context": {"device": "quest"}, junk: junk})
        client.post("/v1/reward", json={"event_id": junk, "slot": junk, "event": junk})
        client.post("/v1/reward", json={"event_id": junk, "slot": "hero", "event": "click", junk: 1})
        client.get(f"/v1/slots/{junk}")
        client.post(f"/v1/admin/slots/{junk}/promote", json={})


def test_unique_values_do_not_add_series(app: object) -> None:
    client = keyed(app.test_client())  # type: ignore[attr-defined]
    rng = random.Random(7)
    flood(client, rng, 20)  # every kind of request seen once: the series they may add are there now
    series(client)  # and a scrape's own
    before = series(client)
    flood(client, rng, 200)
    after = series(client)
    assert after - before == set(), sorted(after - before)[:20]
    assert len(before) < 2000
