"""The service around the library: HTTP, storage, the learner process and the ``storefront`` command.

``http``     the Flask app (store API, admin API, operations, OpenAPI)
``storage``  interfaces by concern, Redis behind them, the embedded Redis
``learner``  the learner process: the join and the ladder runner
``cli``      the ``storefront`` command
``bench``    benchmarks of the service (``storefront bench rank``)
``metrics``  every Prometheus metric, declared in one place
``audit``    escalation transitions, told in the log and the metrics

The service never imports the simulator; the simulator's commands reach
``storefront`` through the ``storefront.commands`` entry-point group.
"""
