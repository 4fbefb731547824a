#!/usr/bin/env bash
# The whole suite: Django checks, server tests on SQLite and on PostgreSQL +
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

step() { echo; echo "=== $* ==="; }

step "django checks"
RUNSTORE_TIMESCALEDB=auto $PY manage.py check --fail-level WARNING || status=1
RUNSTORE_TIMESCALEDB=auto $PY manage.py makemigrations --check --dry-run || status=1

step "server tests on SQLite"
RUNSTORE_TIMESCALEDB=auto DATABASE_URL="sqlite:///$PWD/var/test-sqlite.db" RUNSTORE_TEST_SQLITE_NAME="$PWD/var/test-sqlite-tests.db" \
  $PY -m pytest tests -p no:cacheprovider --junitxml=var/test-reports/sqlite.xml "$@" || status=1

step "server tests on PostgreSQL + TimescaleDB"
DATABASE_URL="$RUNSTORE_TEST_PG_URL" \
  $PY -m pytest tests -p no:cacheprovider --junitxml=var/test-reports/postgres.xml "$@" || status=1

if [[ -d client/tests ]]; then
  step "client tests against a live server"
  RUNSTORE_TIMESCALEDB=auto $PY -m pytest client/tests -p no:django -p no:cacheprovider \
    --junitxml=var/test-reports/client.xml "$@" || status=1
fi

step "summary"
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
