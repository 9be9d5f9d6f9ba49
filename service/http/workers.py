"""How many gunicorn workers and threads ``storefront serve`` (and both targets of ``storefront bench rank``) run.

One worker per core, four threads each (gunicorn's gthread worker).  A rank no
longer waits on Redis (the write-behind writes behind the answer), so the spare
sync workers that once kept the queue moving are not needed; threads keep
connections alive and let a worker's writer thread batch several requests'
pages per flush.  On 2 cores (``storefront bench rank``): 2 × 4 gthread serves
~3,000 req/s against ~2,350 for 4 sync workers; p99 at a steady 1,000 req/s is
~5 ms against ~3 ms (the threads share a GIL; docs/performance.md).
Kept apart from ``gunicorn_conf`` so that reading the defaults does not read
gunicorn's environment.
"""

import os

SERVE_WORKERS = os.cpu_count() or 1
SERVE_THREADS = 4
