"""WSGI entry point: ``gunicorn service.http.wsgi:app`` (configured by the environment, see service.http.app)."""

import logging
import os

from service.http.app import create_app

logging.basicConfig(
    level=os.environ.get("STOREFRONT_LOG_LEVEL", "info").upper(),
    format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
)
app = create_app()
