"""CI and orchestrator capture: a run started under GitHub Actions, GitLab CI, Airflow, Prefect or
Kubeflow Pipelines records where it came from under ``ci/``, read back from a live server."""

from __future__ import annotations

import os
import sys
import types
import uuid

import pytest
import requests

import runstore

# Variables of the systems the client recognises: cleared so the machine running the tests (maybe
# itself a CI job) does not leak into them.
PREFIXES = ("GITHUB_", "GITLAB_", "CI_", "AIRFLOW_CTX_", "PREFECT__", "KFP_", "ARGO_")


@pytest.fixture(autouse=True)
def clean_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIXES) or name in ("RUNSTORE_CAPTURE_CI", "CI"):
            monkeypatch.delenv(name)


def started_with(monkeypatch: pytest.MonkeyPatch, connect, env: dict[str, str], **kwargs) -> runstore.Run:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = connect(**kwargs)
    assert run.wait(60)
    return run


def ci_fields(run: runstore.Run) -> dict:
    try:
        return dict(run["ci"].fetch())
    except runstore.NotFoundError:
        return {}


GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW": "train",
    "GITHUB_JOB": "fit-model",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_REF_NAME": "main",
    "GITHUB_REPOSITORY": "acme/vision",
    "GITHUB_SERVER_URL": "https://github.example.com",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_ACTOR": "octocat",
}


def test_github_actions_records_workflow_run_job_commit_and_run_url(monkeypatch, connect):
    run = started_with(monkeypatch, connect, GITHUB)
    assert ci_fields(run) == {
        "system": "github-actions",
        "pipeline": "github-actions:acme/vision:9876543210",
        "pipeline_id": "9876543210",
        "pipeline_name": "train",
        "job_name": "fit-model",
        "attempt": 2,
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "ref": "main",
        "repository": "acme/vision",
        "event": "push",
        "actor": "octocat",
        "url": "https://github.example.com/acme/vision/actions/runs/9876543210",
    }
    run.stop()


def test_github_pull_request_records_the_head_branch_as_ref(monkeypatch, connect):
    env = {**GITHUB, "GITHUB_REF_NAME": "17/merge", "GITHUB_HEAD_REF": "feature/x", "GITHUB_EVENT_NAME": "pull_request"}
    run = started_with(monkeypatch, connect, env)
    assert run["ci/ref"].fetch() == "feature/x"
    assert run["ci/event"].fetch() == "pull_request"
    run.stop()


def test_gitlab_ci_records_pipeline_job_commit_and_urls(monkeypatch, connect):
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_ID": "1234",
        "CI_PIPELINE_URL": "https://gitlab.example.com/acme/vision/-/pipelines/1234",
        "CI_JOB_ID": "5678",
        "CI_JOB_NAME": "train gpu",
        "CI_JOB_STAGE": "train",
        "CI_JOB_URL": "https://gitlab.example.com/acme/vision/-/jobs/5678",
        "CI_COMMIT_SHA": "fedcba9876543210fedcba9876543210fedcba98",
        "CI_COMMIT_REF_NAME": "release-1",
        "CI_PROJECT_PATH": "acme/vision",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "GITLAB_USER_LOGIN": "alice",
    }
    run = started_with(monkeypatch, connect, env)
    assert ci_fields(run) == {
        "system": "gitlab-ci",
        "pipeline": "gitlab-ci:acme/vision:1234",
        "pipeline_id": "1234",
        "job_id": "5678",
        "job_name": "train gpu",
        "stage": "train",
        "commit": "fedcba9876543210fedcba9876543210fedcba98",
        "ref": "release-1",
        "repository": "acme/vision",
        "event": "merge_request_event",
        "actor": "alice",
        "url": "https://gitlab.example.com/acme/vision/-/pipelines/1234",
        "job_url": "https://gitlab.example.com/acme/vision/-/jobs/5678",
    }
    run.stop()


def test_airflow_task_records_dag_run_task_and_try_number(monkeypatch, connect):
    env = {
        "AIRFLOW_CTX_DAG_ID": "nightly_training",
        "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2026-01-01T00:00:00+00:00",
        "AIRFLOW_CTX_TASK_ID": "fit",
        "AIRFLOW_CTX_TRY_NUMBER": "3",
        "AIRFLOW_CTX_DAG_OWNER": "ml-team",
    }
    run = started_with(monkeypatch, connect, env)
    assert ci_fields(run) == {
        "system": "airflow",
        "pipeline": "airflow:nightly_training:scheduled__2026-01-01T00:00:00+00:00",
        "pipeline_id": "scheduled__2026-01-01T00:00:00+00:00",
        "pipeline_name": "nightly_training",
        "job_id": "scheduled__2026-01-01T00:00:00+00:00/fit",
        "job_name": "fit",
        "attempt": 3,
        "actor": "ml-team",
    }
    run.stop()


def test_prefect_flow_run_from_the_worker_environment(monkeypatch, connect):
    flow_run = str(uuid.uuid4())
    env = {
        "PREFECT__FLOW_RUN_ID": flow_run,
        "PREFECT__RUNTIME__FLOW_RUN__FLOW_NAME": "train-flow",
        "PREFECT__RUNTIME__FLOW_RUN__NAME": "crimson-otter",
    }
    run = started_with(monkeypatch, connect, env)
    assert ci_fields(run) == {
        "system": "prefect",
        "pipeline": f"prefect:{flow_run}",
        "pipeline_id": flow_run,
        "pipeline_name": "train-flow",
        "run_name": "crimson-otter",
    }
    run.stop()


def test_prefect_flow_and_task_run_from_prefects_run_context(monkeypatch, connect):
    """Inside a flow the user's code imported Prefect: its run context names the flow run and task run."""
    flow_run_id, task_run_id = uuid.uuid4(), uuid.uuid4()
    flow_context = types.SimpleNamespace(
        flow_run=types.SimpleNamespace(id=flow_run_id, name="crimson-otter", run_count=2),
        flow=types.SimpleNamespace(name="train-flow"),
    )
    task_context = types.SimpleNamespace(task_run=types.SimpleNamespace(id=task_run_id, name="fit-0"))
    context = types.ModuleType("prefect.context")
    context.FlowRunContext = types.SimpleNamespace(get=lambda: flow_context)  # type: ignore[attr-defined]
    context.TaskRunContext = types.SimpleNamespace(get=lambda: task_context)  # type: ignore[attr-defined]
    prefect = types.ModuleType("prefect")
    prefect.context = context  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prefect", prefect)
    monkeypatch.setitem(sys.modules, "prefect.context", context)
    run = started_with(monkeypatch, connect, {})
    assert ci_fields(run) == {
        "system": "prefect",
        "pipeline": f"prefect:{flow_run_id}",
        "pipeline_id": str(flow_run_id),
        "pipeline_name": "train-flow",
        "run_name": "crimson-otter",
        "attempt": 2,
        "job_id": str(task_run_id),
        "job_name": "fit-0",
    }
    run.stop()


def test_kubeflow_pipeline_pod_records_the_argo_workflow_and_node(monkeypatch, connect):
    env = {
        "KFP_POD_NAME": "train-pipeline-x7k2p-1234567890",
        "KFP_POD_UID": "0b6c7d0e-0000-4000-8000-000000000001",
        "ARGO_WORKFLOW_NAME": "train-pipeline-x7k2p",
        "ARGO_WORKFLOW_UID": "5d1c2a8e-0000-4000-8000-000000000002",
        "ARGO_NODE_ID": "train-pipeline-x7k2p-3141592653",
        "KFP_NAMESPACE": "ml",
    }
    run = started_with(monkeypatch, connect, env)
    assert ci_fields(run) == {
        "system": "kubeflow",
        "pipeline": "kubeflow:5d1c2a8e-0000-4000-8000-000000000002",
        "pipeline_id": "5d1c2a8e-0000-4000-8000-000000000002",
        "pipeline_name": "train-pipeline-x7k2p",
        "job_id": "train-pipeline-x7k2p-3141592653",
        "pod": "train-pipeline-x7k2p-1234567890",
        "namespace": "ml",
    }
    run.stop()


def test_kubeflow_run_id_given_to_the_component_wins_over_the_workflow_uid(monkeypatch, connect):
    env = {"KFP_POD_NAME": "p-1", "KFP_RUN_ID": "run-42", "ARGO_WORKFLOW_UID": "wf-uid"}
    run = started_with(monkeypatch, connect, env)
    assert run["ci/pipeline"].fetch() == "kubeflow:run-42"
    assert run["ci/job_id"].fetch() == "p-1"
    run.stop()


def test_an_orchestrator_task_inside_a_ci_job_is_recorded_as_the_orchestrators(monkeypatch, connect):
    run = started_with(monkeypatch, connect, {**GITHUB, "AIRFLOW_CTX_DAG_ID": "dag", "AIRFLOW_CTX_DAG_RUN_ID": "r1"})
    assert run["ci/system"].fetch() == "airflow"
    assert run["ci/pipeline"].fetch() == "airflow:dag:r1"
    run.stop()


@pytest.mark.parametrize("value", ["0", "false", "off", "no"])
def test_runstore_capture_ci_off_records_nothing(monkeypatch, connect, value):
    run = started_with(monkeypatch, connect, {**GITHUB, "RUNSTORE_CAPTURE_CI": value})
    run["x"] = 1
    assert run.wait(60)
    assert ci_fields(run) == {}
    run.stop()


def test_outside_any_ci_system_nothing_is_recorded(monkeypatch, connect):
    run = started_with(monkeypatch, connect, {"GITHUB_ACTIONS": "false", "GITLAB_CI": ""})
    run["x"] = 1
    assert run.wait(60)
    assert ci_fields(run) == {}
    run.stop()


def test_an_odd_environment_never_reaches_user_code_and_is_stored_cleaned(monkeypatch, connect):
    env = {
        **GITHUB,
        "GITHUB_RUN_ATTEMPT": "second",  # not a number: no ci/attempt (it stays an int field everywhere)
        "GITHUB_WORKFLOW": "train\x01\x1b[31m" + "w" * 5000,  # control characters, very long
        "GITHUB_JOB": "   ",
        "GITHUB_SERVER_URL": "",
    }
    run = started_with(monkeypatch, connect, env)
    fields = ci_fields(run)
    assert "attempt" not in fields and "job_name" not in fields
    assert fields["pipeline_name"].startswith("train  [31mwww")
    assert len(fields["pipeline_name"]) == 1000
    assert fields["url"] == "https://github.com/acme/vision/actions/runs/9876543210"
    run.stop()
    assert run.status()["errors"] == 0


def test_runs_of_one_pipeline_are_found_and_grouped_by_ci_pipeline(monkeypatch, connect, server, project):
    for run_id, job in (("100", "a"), ("100", "b"), ("200", "a")):
        run = started_with(monkeypatch, connect, {**GITHUB, "GITHUB_RUN_ID": run_id, "GITHUB_JOB": job})
        run.stop()
    table = runstore.init_project(project, api_token=server.token, url=server.url).fetch_runs_table(
        query='ci/pipeline = "github-actions:acme/vision:100"', columns=["ci/job_name"], sort_by="ci/job_name"
    )
    assert [row["ci/job_name"] for row in table] == ["b", "a"]
    groups = requests.get(
        f"{server.url}/api/v1/runs/groups",
        params={"project": project, "group_by": "ci/pipeline"},
        headers={"Authorization": f"Bearer {server.token}", "Accept": "application/json"},
        timeout=30,
    )
    assert groups.status_code == 200, groups.text
    counts = {tuple(g["key"]): g["count"] for g in groups.json()["groups"]}
    assert counts == {("github-actions:acme/vision:100",): 2, ("github-actions:acme/vision:200",): 1}
