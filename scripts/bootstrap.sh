#!/usr/bin/env bash
# Create the virtualenv and install the server, the client, the test tools and the
# pinned linters/type checkers (requirements-dev.txt).
# Idempotent; installs python3-venv first on a bare Debian.
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv}"
cd "$(dirname "$0")/.."

if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "bootstrap: installing python3-venv" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -x "$VENV/bin/uv" ]]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
fi
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -r requirements.txt
if [[ -f client/pyproject.toml ]]; then
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e './client[test]'
fi
# last, so its exact pins win over the client's looser test ranges (mypy)
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -r requirements-dev.txt
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version))"
