"""The HTTP service: the app factory and what a worker serves from, the store API, the admin API, operations.

``app``            ``create_app()``: the Flask factory (blueprints, error handlers, storage)
``runtime``        the runtime a worker serves from, and the holder that reloads config and ladder states
``ladders``        each slot's serving policy from its saved escalation state
``api``            ``/v1/rank``, ``/v1/reward``, ``/v1/slots``
``admin``          ``/v1/admin/...``: escalation status, history, promote, rollback, freeze
``ops``            ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``
``errors``         JSON errors that name the field
``ids``            event ids
``openapi``        the OpenAPI document, built from the config in force
``wsgi``, ``gunicorn_conf``  how gunicorn runs it
"""
