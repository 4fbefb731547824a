"""MLflow's Model Registry REST API over Runstore's model registry (runs/mlflow/registry.py).

The stock ``mlflow`` clients of tests/mlflow_client/clients.txt run tests/mlflow_client/registry.py
against a live server; the HTTP tests below pin MLflow's error codes and the permission world."""

import os
import subprocess

import pytest

from accounts.models import ApiToken

from .test_mlflow_client import CLIENTS, REPO, venv_python

SCRIPT = REPO / "tests" / "mlflow_client" / "registry.py"


@pytest.mark.parametrize("version", sorted(CLIENTS))
def test_stock_mlflow_client_model_registry_workflow_passes(version, live_server, transactional_db, django_user_model):
    python = venv_python(CLIENTS[version])
    user = django_user_model.objects.create_user("registry-user", password="pw")
    _, token = ApiToken.issue(user, name="mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DJANGO_", "DATABASE_", "RUNSTORE_"))}
    env.update(
        MLFLOW_TRACKING_URI=live_server.url,
        MLFLOW_TRACKING_TOKEN=token,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        WORKFLOW_SUFFIX=version,
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [python, str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env, cwd=REPO, check=False
    )
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, output
    assert f"registry ok (mlflow {version})" in result.stdout, output
