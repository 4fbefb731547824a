"""Lists answer in a bounded number of queries however many rows they show (no N+1)."""

import pytest
from django.test import Client

from projects import services as project_services
from runs import services as run_services

from .conftest import make_user

MANY = 8  # an N+1 would add at least this many queries to a bound set a query or two above the count


@pytest.fixture
def crowded(owner, contributor, workspace, project):
    """Many workspaces, projects with runs and members, and exports, all visible to ``owner``."""
    for i in range(MANY):
        ws = project_services.create_workspace(owner, f"team{i}", f"Team {i}")
        project_services.set_membership(ws, contributor, project_services.WorkspaceRole.MEMBER)
        extra = project_services.create_project(owner, workspace, f"p{i}", key=f"PX{i}")
        run_services.create_run(owner, extra, name=f"r{i}")
        project_services.set_membership(workspace, make_user(f"member{i}"), project_services.WorkspaceRole.MEMBER)
    return workspace


def _browser(user):
    client = Client()
    client.force_login(user)
    return client


# The workspace page also shows usage against quota (the quota, the project count, the usage row,
# which its first view creates) and asks whether the user may create projects and manage members.
@pytest.mark.parametrize("url,budget", [("/", 6), ("/w/acme/", 15)])
def test_workspace_and_project_pages_have_bounded_queries(crowded, owner, url, budget, django_assert_max_num_queries):
    client = _browser(owner)
    with django_assert_max_num_queries(budget):
        response = client.get(url)
    assert response.status_code == 200 and f"p{MANY - 1}".encode() in response.content


# A URL naming a workspace costs one more query: its quota, for the request-rate buckets
# (projects.throttling; the bucket itself is one more statement on the database store, none on Redis).
@pytest.mark.parametrize("url,budget", [("/api/v1/workspaces/", 6), ("/api/v1/workspaces/acme/projects/", 7)])
def test_workspace_and_project_lists_have_bounded_queries(
    crowded, owner_api, url, budget, django_assert_max_num_queries
):
    with django_assert_max_num_queries(budget):
        response = owner_api.get(url)
    assert response.status_code == 200 and len(response.json()) > MANY


def test_export_list_has_bounded_queries(owner_api, owner, project, django_assert_max_num_queries):
    for i in range(MANY):
        run, _ = run_services.create_run(owner, project, name=f"e{i}")
        assert (
            owner_api.post(
                "/api/v1/exports/", {"project": "acme/vision", "run": run.human_id}, format="json"
            ).status_code
            == 202
        )
    with django_assert_max_num_queries(5):
        response = owner_api.get("/api/v1/exports/", {"project": "acme/vision"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"] if isinstance(body, dict) else body) == MANY


def _mlflow_metrics(batch: int, keys: int, size: int = 1000) -> list[dict]:
    per_key = size // keys
    return [
        {
            "key": f"m{k}",
            "value": 0.5 + j,
            "timestamp": 1_700_000_000_000 + batch * per_key + j,
            "step": batch * per_key + j,
        }
        for k in range(keys)
        for j in range(per_key)
    ]


# An MLflow log-batch of 1,000 metrics to series that exist: the request (token, its workspaces, the
# rate bucket), the run and the one permission statement, the run's lock, one read of its fields, one
# insert of the points (two on SQLite: its bound-parameter limit), one upsert of the latest values, the
# storage quota, one update of the series, the series points, the roll-up cursors, and the savepoints
# of the nested transactions. However many metric keys the batch names.
@pytest.mark.parametrize("keys", [2, 10])
def test_mlflow_log_batch_has_bounded_queries(owner_api, run, keys, django_assert_max_num_queries):
    url = "/api/2.0/mlflow/runs/log-batch"
    assert (
        owner_api.post(url, {"run_id": run.uuid.hex, "metrics": _mlflow_metrics(0, keys)}, format="json").status_code
        == 200
    )
    with django_assert_max_num_queries(20):
        response = owner_api.post(url, {"run_id": run.uuid.hex, "metrics": _mlflow_metrics(1, keys)}, format="json")
    assert response.status_code == 200, response.json()
    history = owner_api.get("/api/2.0/mlflow/metrics/get-history", {"run_id": run.uuid.hex, "metric_key": "m0"}).json()
    assert len(history["metrics"]) == 2 * (1000 // keys)
