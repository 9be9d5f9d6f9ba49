# The storefront bandit service: `storefront serve` (API under gunicorn) or `storefront learn` (the learner).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bandit ./bandit
COPY service ./service
COPY simulator ./simulator
COPY dashboards ./dashboards
COPY examples ./examples
RUN pip install . && useradd --create-home --uid 10001 storefront && mkdir -p /data /secrets && chown storefront /data /secrets

USER storefront
ENV STOREFRONT_CONFIG=/app/examples/storefront.yaml
EXPOSE 8000 9100
# Ready = the workers answer and Redis is reachable (python: the slim image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"
CMD ["sh", "-c", "exec storefront serve \"$STOREFRONT_CONFIG\" --bind 0.0.0.0:8000 --no-learner --data-dir /data --workers ${STOREFRONT_WORKERS:-2}"]
