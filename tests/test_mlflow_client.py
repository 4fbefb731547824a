"""The stock ``mlflow`` client, unchanged, against a live Runstore (tests/mlflow_client/workflow.py).

Each MLflow version runs in its own cached virtualenv (scripts/venv-for.sh builds it once under
~/.cache/runstore/venvs/<hash>); the server is pytest-django's live server on the test database,
so this runs on SQLite and on PostgreSQL alike.
"""

import os
import subprocess
from pathlib import Path

import pytest

from accounts.models import ApiToken

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "tests" / "mlflow_client" / "workflow.py"
# The newest MLflow and the oldest we support (scripts/test.sh builds their virtualenvs first).
CLIENTS = {
    line.split()[0].split("==")[1]: line.split()
    for line in (REPO / "tests" / "mlflow_client" / "clients.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def venv_python(requirements: list[str]) -> str:
    if os.environ.get("RUNSTORE_SKIP_MLFLOW_CLIENT"):
        pytest.skip("RUNSTORE_SKIP_MLFLOW_CLIENT is set")
    try:
        result = subprocess.run(
            [str(REPO / "scripts" / "venv-for.sh"), *requirements],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not build the MLflow client's virtualenv: {exc}\n{getattr(exc, 'stderr', '')}")
    return str(Path(result.stdout.strip().splitlines()[-1]) / "bin" / "python")


@pytest.mark.parametrize("version", sorted(CLIENTS))
def test_stock_mlflow_client_workflow_passes(version, live_server, transactional_db, django_user_model):
    python = venv_python(CLIENTS[version])
    user = django_user_model.objects.create_user("mlflow-user", password="pw")
    _, token = ApiToken.issue(user, name="mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DJANGO_", "DATABASE_", "RUNSTORE_"))}
    env.update(
        MLFLOW_TRACKING_URI=live_server.url,
        MLFLOW_TRACKING_TOKEN=token,
        # A 5xx would be a defect here: fail at once instead of retrying for minutes.
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        WORKFLOW_SUFFIX=version,
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [python, str(WORKFLOW)], capture_output=True, text=True, timeout=600, env=env, cwd=REPO, check=False
    )
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, output
    assert f"workflow ok (mlflow {version})" in result.stdout, output
