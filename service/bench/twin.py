"""The do-nothing twin that ``storefront bench rank`` measures ``/v1/rank`` against.

A Flask app with the same route that reads the request body and answers a
small constant JSON object, served by gunicorn with the same settings as the
service (``gunicorn -c python:service.http.gunicorn_conf service.bench.twin:app``).
Its throughput is the anchor: what Flask and gunicorn alone cost on this
machine, in the same run, so the ratio does not depend on how fast the box is.
"""

from __future__ import annotations

from flask import Flask, Response, request

_ANSWER = '{"event_id":"0","config_version":"twin","logged":false,"slots":[]}'
_JSON = "application/json"

app = Flask("storefront-bench-twin")


@app.post("/v1/rank")
def rank() -> Response:
    request.get_data(cache=False)
    return Response(_ANSWER, mimetype=_JSON)


@app.get("/healthz")
def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype=_JSON)
