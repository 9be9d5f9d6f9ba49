"""How many gunicorn workers and threads ``storefront serve`` (and both targets of ``storefront bench rank``) run.

Two sync workers per core: each ``/v1/rank`` waits on one Redis round trip,
and a spare worker keeps the queue moving meanwhile (p99 at 1,000 req/s on 2
cores: about 50 ms with 4 workers, a backlog of 600 ms with 2; ``storefront
bench rank``).  Kept apart from ``gunicorn_conf`` so that reading the defaults
does not read gunicorn's environment.
"""

import os

SERVE_WORKERS = 2 * (os.cpu_count() or 1)
SERVE_THREADS = 1
