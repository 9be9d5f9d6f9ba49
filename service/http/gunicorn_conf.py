"""gunicorn settings for the storefront API (``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``).

Every value can be overridden by the environment (``storefront serve`` sets them
from its flags).  Prometheus multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR``
to point to an empty folder before the workers start, and each dead worker's
files marked, which ``child_exit`` does.
"""

import os

from prometheus_client import multiprocess

from service.http.workers import SERVE_THREADS, SERVE_WORKERS

bind = os.environ.get("STOREFRONT_BIND", "127.0.0.1:8000")
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


def worker_exit(server, worker):
    # A graceful stop (SIGTERM, max_requests, a reload) flushes the worker's decision writer to Redis or its spool.
    from service.storage.writebehind import close_all

    close_all()
