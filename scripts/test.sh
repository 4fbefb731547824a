#!/usr/bin/env bash
# The whole suite: import contracts, ruff, mypy, Django checks, server tests on SQLite and on PostgreSQL +
# TimescaleDB, then the client's tests against a live server. Expects
# `scripts/services.sh up` to have run (it writes var/services.env).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# shellcheck disable=SC1091
source var/services.env
export RUNSTORE_TIMESCALEDB=required  # the PostgreSQL run must exercise the hypertable path
mkdir -p var/test-reports && rm -f var/test-reports/*.xml
status=0

failed_checks=()
step() { echo; echo "=== $* ==="; }
check_failed() { status=1; failed_checks+=("$1"); }

# Static checks first: each is its own step and fails the suite (set -e is off on purpose so every
# step runs and the summary still prints). Tools are pinned in requirements-dev.txt.
step "import contracts (lint-imports)"
.venv/bin/lint-imports --no-cache || check_failed "lint-imports"

step "ruff check"
.venv/bin/ruff check . || check_failed "ruff check"

step "ruff format --check"
.venv/bin/ruff format --check . || check_failed "ruff format --check"

step "mypy: server (django-stubs, pyproject.toml [tool.mypy])"
RUNSTORE_TIMESCALEDB=auto .venv/bin/mypy || check_failed "mypy server"

step "mypy: client (--strict, client/pyproject.toml [tool.mypy])"
(cd client && ../.venv/bin/mypy --strict --cache-dir ../var/mypy-cache-client) || check_failed "mypy client"

step "django checks"
RUNSTORE_TIMESCALEDB=auto $PY manage.py check --fail-level WARNING || check_failed "manage.py check"
RUNSTORE_TIMESCALEDB=auto $PY manage.py makemigrations --check --dry-run || check_failed "makemigrations --check"

step "MLflow client virtualenvs (built once, cached under ~/.cache/runstore/venvs)"
# tests/test_mlflow_client.py runs the stock mlflow client in these; building them here keeps the
# test steps' time to the tests themselves, and a build that hangs is cut off.
grep -v '^#' tests/mlflow_client/clients.txt | while read -r requirements; do
  # shellcheck disable=SC2086  # one requirement per word
  timeout 900 scripts/venv-for.sh $requirements >/dev/null || echo "could not build: $requirements"
done

# The two server suites run side by side (each is one pytest process, mostly on one core), each with its
# own Redis databases and var/ folder; their output is printed whole, one after the other, when both end.
step "server tests on SQLite and on PostgreSQL + TimescaleDB, side by side"
REDIS_BASE="${RUNSTORE_TEST_REDIS_URL%/*}"
LOGS=var/test-logs
mkdir -p "$LOGS"
suite_start=$SECONDS
(
  export RUNSTORE_TIMESCALEDB=auto DATABASE_URL="sqlite:///$PWD/var/test-sqlite.db"
  export RUNSTORE_TEST_SQLITE_NAME="$PWD/var/test-sqlite-tests.db" RUNSTORE_VAR_DIR="$PWD/var/test-var-sqlite"
  export RUNSTORE_TEST_REDIS_URL="$REDIS_BASE/1" RUNSTORE_TEST_WORKER_REDIS_DB=13
  exec $PY -m pytest tests -p no:cacheprovider --junitxml=var/test-reports/sqlite.xml "$@"
) >"$LOGS/sqlite.log" 2>&1 &
sqlite_pid=$!
(
  export DATABASE_URL="$RUNSTORE_TEST_PG_URL" RUNSTORE_VAR_DIR="$PWD/var/test-var-postgres"
  export RUNSTORE_TEST_REDIS_URL="$REDIS_BASE/2" RUNSTORE_TEST_WORKER_REDIS_DB=14
  exec $PY -m pytest tests -p no:cacheprovider --junitxml=var/test-reports/postgres.xml "$@"
) >"$LOGS/postgres.log" 2>&1 &
pg_pid=$!
wait $sqlite_pid || status=1
echo "--- SQLite (ended after $((SECONDS - suite_start)) s) ---"
cat "$LOGS/sqlite.log"
wait $pg_pid || status=1
echo "--- PostgreSQL + TimescaleDB (both ended after $((SECONDS - suite_start)) s) ---"
cat "$LOGS/postgres.log"

if [[ -d client/tests ]]; then
  step "client tests against a live server"
  RUNSTORE_TIMESCALEDB=auto $PY -m pytest client/tests -p no:django -p no:cacheprovider \
    --ignore=client/tests/integrations --junitxml=var/test-reports/client.xml "$@" || status=1
fi

if [[ -d client/tests/integrations/requirements ]]; then
  # Each framework integration against its newest and oldest supported release, in virtualenvs cached
  # under ~/.cache/runstore/venvs (built once: a few minutes on a fresh machine, seconds after).
  step "framework integrations: version matrix (scripts/matrix.py)"
  RUNSTORE_TIMESCALEDB=auto timeout "${RUNSTORE_MATRIX_TIMEOUT:-2700}" $PY scripts/matrix.py || status=1
fi

step "summary"
for name in "${failed_checks[@]}"; do echo "check failed: $name"; done
$PY - <<'PYEOF'
import glob
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sorted(glob.glob("var/test-reports/*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        total, fails = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skips = int(suite.get("skipped", 0))
        print(f"{path.rsplit('/', 1)[-1]:14} {total - fails - skips} passed, {fails} failed, {skips} skipped")
        passed, failed, skipped = passed + total - fails - skips, failed + fails, skipped + skips
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
PYEOF
exit $status
