#!/usr/bin/env bash
# venv-for.sh REQUIREMENT...  → prints the path of a cached virtualenv holding exactly these requirements.
#
# The virtualenv lives under ${RUNSTORE_VENV_CACHE:-~/.cache/runstore/venvs}/<hash>, <hash> being the
# SHA-256 of the sorted requirements and the Python version: built once (with uv, from PyPI), reused
# after. It counts as built only once its `.complete` marker exists (an interrupted build is redone),
# and a lock keeps two builds of the same one from racing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
  echo "usage: $0 REQUIREMENT..." >&2
  exit 2
fi
PYTHON=${RUNSTORE_VENV_PYTHON:-python3}
UV=${UV:-$PWD/.venv/bin/uv}
cache=${RUNSTORE_VENV_CACHE:-$HOME/.cache/runstore/venvs}
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$({ echo "python $pyver"; printf '%s\n' "$@" | sort; } | sha256sum | cut -c1-16)
target="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/.$key.lock"
flock 9
if [[ ! -f "$target/.complete" ]]; then
  rm -rf "$target"
  "$UV" venv --quiet --python "$PYTHON" "$target" >&2
  "$UV" pip install --quiet --python "$target/bin/python" "$@" >&2
  printf '%s\n' "$@" >"$target/requirements.txt"
  touch "$target/.complete"
fi
echo "$target"
