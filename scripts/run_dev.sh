#!/usr/bin/env bash
# Start the development web server together with one Celery worker serving every queue (and the
# beat scheduler); stopping either stops both.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# The Celery app and the server entry points default to production settings: say development.
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.base}

"$PYTHON" -m celery -A config worker -B -Q default,gpu,train --pool threads --concurrency 4 \
    --loglevel INFO --hostname "dev@%h" &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT INT TERM

echo
echo "Parley is starting at http://$HOST:$PORT/  (Ctrl+C stops the server and the worker)"
echo
"$PYTHON" manage.py runserver "$HOST:$PORT"
