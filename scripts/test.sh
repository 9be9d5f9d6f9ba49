#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, unit and integration tests.
# This is the README's test command, and what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup-system.sh                       # Debian packages: prometheus, wrk, docker-compose, npm, chromium, redis-server
npm ci --prefix dashboards/schema --no-audit --no-fund --silent   # TypeScript + @grafana/schema: the dashboards' schema
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,plot]'

echo "== ruff";  .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy
echo "== layers"; .venv/bin/lint-imports --no-cache | sed -n "/^Contracts/,$ p"
if [ "$#" -gt 0 ]; then                    # e.g. bash scripts/test.sh tests/bandit -x
    echo "== pytest $*"; .venv/bin/pytest "$@"
else
    # Library, service and simulation tests on every core (a file stays on one worker, so a module's fixtures are
    # built once); then the integration tests, which start gunicorn, Redis and Prometheus, alone on the machine.
    echo "== pytest (unit and slow, parallel)"; .venv/bin/pytest -n auto --dist loadfile -m "not integration"
    echo "== pytest (integration)";           .venv/bin/pytest -m integration
fi
