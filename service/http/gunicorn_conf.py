"""gunicorn settings for the storefront API (``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``).

Every value can be overridden by the environment (``storefront serve`` sets them
from its flags).  Prometheus multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR``
to point to an empty folder before the workers start, and each dead worker's
files marked, which ``child_exit`` does.
"""

import os

from prometheus_client import multiprocess

bind = os.environ.get("STOREFRONT_BIND", "127.0.0.1:8000")
# Defaults of `storefront serve` (and of both targets of `storefront bench rank`).  Two sync workers per core: each
# /v1/rank waits on one Redis round trip, and a spare worker keeps the queue moving meanwhile (p99 at 1,000 req/s on
# 2 cores: about 50 ms with 4 workers, a backlog of 600 ms with 2; `storefront bench rank`).
SERVE_WORKERS = 2 * (os.cpu_count() or 1)
SERVE_THREADS = 1

workers = int(os.environ.get("STOREFRONT_WORKERS", SERVE_WORKERS))
worker_class = os.environ.get("STOREFRONT_WORKER_CLASS", "sync")
threads = int(os.environ.get("STOREFRONT_THREADS", SERVE_THREADS))
backlog = int(os.environ.get("STOREFRONT_BACKLOG", "2048"))
timeout = int(os.environ.get("STOREFRONT_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
max_requests = int(os.environ.get("STOREFRONT_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("STOREFRONT_ACCESS_LOG") or None
loglevel = os.environ.get("STOREFRONT_LOG_LEVEL", "info")
proc_name = "storefront-api"
# gunicorn ≥ 23 opens a control socket under $HOME shared by every instance on the machine; not needed here.
control_socket_disable = True


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
