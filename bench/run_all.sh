#!/usr/bin/env bash
# Run every benchmark and print the summary table: bench/run_all.sh [run_all.py options]
# Needs the server virtualenv (.venv) and PostgreSQL (scripts/services.sh up); creates
# bench/.venv-mlflow from bench/requirements-mlflow.txt on first use (bench/client_compare.py creates
# bench/.venv-wandb and bench/.venv-aim from their requirements files the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv-mlflow/bin/mlflow ] || ! cmp -s bench/requirements-mlflow.txt bench/.venv-mlflow/.requirements; then
    python3 -m venv bench/.venv-mlflow
    if [ -x .venv/bin/uv ]; then
        .venv/bin/uv pip install --quiet --python bench/.venv-mlflow/bin/python -r bench/requirements-mlflow.txt
    else
        bench/.venv-mlflow/bin/pip install --quiet -r bench/requirements-mlflow.txt
    fi
    cp bench/requirements-mlflow.txt bench/.venv-mlflow/.requirements
fi
exec .venv/bin/python bench/run_all.py "$@"
