#!/usr/bin/env bash
# Runstore on its embedded defaults: SQLite and blobs under var/, a Celery
# worker on a broker that needs no server, demo data, the web server on
# 127.0.0.1:$PORT. Ctrl-C stops both processes. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
PY=.venv/bin/python
mkdir -p var/run

$PY manage.py migrate --noinput -v 0
$PY manage.py collectstatic --noinput -v 0
$PY manage.py demo --url "http://127.0.0.1:${PORT}"

stop_worker() {
  if [[ -f var/run/celery.pid ]]; then
    kill "$(cat var/run/celery.pid)" 2>/dev/null || true
    for _ in $(seq 50); do [[ -f var/run/celery.pid ]] || break; sleep 0.1; done
  fi
}
stop_worker  # a worker left over from an earlier run
trap stop_worker EXIT INT TERM

# One worker on every queue, with celery beat inside it (-B) for the periodic
# maintenance (roll-up and blob sweeps, storage accounting, trash, clean-up).
.venv/bin/celery -A tracker worker -B --queues ingest,media,maintenance --loglevel INFO --concurrency 2 \
  --schedule var/run/celerybeat-schedule --pidfile var/run/celery.pid --logfile var/run/celery.log >>var/run/celery.log 2>&1 &
echo "Celery worker and beat started (log: var/run/celery.log)"

exec_server() {
  .venv/bin/gunicorn tracker.wsgi:application --bind "127.0.0.1:${PORT}" \
    --workers 2 --threads 4 --access-logfile - --error-logfile -
}
exec_server
