"""WSGI entry point: ``gunicorn service.wsgi:app`` (configured by the environment, see service.app)."""

import logging
import os

from service.app import create_app

logging.basicConfig(
    level=os.environ.get("STOREFRONT_LOG_LEVEL", "info").upper(),
    format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
)
app = create_app()
