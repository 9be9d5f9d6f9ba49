#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, unit and integration tests.
# This is the README's test command, and what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup-system.sh                       # Debian packages: prometheus (promtool), wrk
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,plot]'

echo "== ruff";  .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy
echo "== layers"; .venv/bin/lint-imports --no-cache | sed -n "/^Contracts/,$ p"
echo "== pytest"; .venv/bin/pytest "$@"
