"""Where a run was started from: the CI system or orchestrator around it, read from its documented
environment variables and recorded under ``ci/`` when the run starts.

Supported (the first that matches, innermost first: an orchestrator task running inside a CI job
is recorded as the orchestrator's):

* Airflow (``AIRFLOW_CTX_DAG_ID``, exported into every task's environment),
* Prefect (``PREFECT__FLOW_RUN_ID``, set by workers and runners, or the flow run in Prefect's run
  context when the code imported Prefect; the ``PREFECT__RUNTIME__FLOW_RUN__*`` and
  ``PREFECT__RUNTIME__TASK_RUN__*`` variables of ``prefect.runtime`` fill in names),
* Kubeflow Pipelines (``KFP_POD_NAME``, set on every pipeline pod, with Argo Workflows' ``ARGO_*``),
* GitLab CI (``GITLAB_CI``),
* GitHub Actions (``GITHUB_ACTIONS``).

Fields (each only when known): ``ci/system``, ``ci/pipeline`` (the group key: one value per
pipeline run, e.g. ``github-actions:acme/vision:123456``, so ``ci/pipeline = "..."`` finds the runs
of one pipeline and the run table groups by it), ``ci/pipeline_id``, ``ci/pipeline_name``,
``ci/job_id``, ``ci/job_name``, ``ci/attempt`` (int), ``ci/commit``, ``ci/ref``, ``ci/repository``,
``ci/url`` (the pipeline's page), ``ci/job_url``. ``RUNSTORE_CAPTURE_CI=0`` turns it off.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

MAX_VALUE = 1000  # characters kept of one variable


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """``RUNSTORE_CAPTURE_CI``: on unless ``0``, ``false``, ``no`` or ``off``."""
    raw = (os.environ if environ is None else environ).get("RUNSTORE_CAPTURE_CI", "")
    return raw.strip().lower() not in ("0", "false", "no", "off")


def _clean(value: Any) -> str | None:
    """A variable's value as a field can hold it: no control characters (PostgreSQL refuses NUL),
    at most ``MAX_VALUE`` characters; None for empty."""
    if value is None:
        return None
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in str(value)).strip()
    return text[:MAX_VALUE] or None


def _int(value: Any) -> int | None:
    text = _clean(value)
    if text is None or not text.lstrip("-").isdigit() or len(text) > 18:
        return None
    return int(text)


def _github(env: Mapping[str, str]) -> dict[str, Any]:
    server = _clean(env.get("GITHUB_SERVER_URL")) or "https://github.com"
    repository, run_id = _clean(env.get("GITHUB_REPOSITORY")), _clean(env.get("GITHUB_RUN_ID"))
    fields: dict[str, Any] = {
        "pipeline_id": run_id,
        "pipeline_name": _clean(env.get("GITHUB_WORKFLOW")),
        "job_name": _clean(env.get("GITHUB_JOB")),
        "attempt": _int(env.get("GITHUB_RUN_ATTEMPT")),
        "commit": _clean(env.get("GITHUB_SHA")),
        "ref": _clean(env.get("GITHUB_HEAD_REF")) or _clean(env.get("GITHUB_REF_NAME")),
        "repository": repository,
        "event": _clean(env.get("GITHUB_EVENT_NAME")),
        "actor": _clean(env.get("GITHUB_ACTOR")),
    }
    if repository and run_id:
        fields["url"] = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
    fields["group"] = (repository, run_id)
    return fields


def _gitlab(env: Mapping[str, str]) -> dict[str, Any]:
    project = _clean(env.get("CI_PROJECT_PATH"))
    pipeline = _clean(env.get("CI_PIPELINE_ID"))
    return {
        "pipeline_id": pipeline,
        "pipeline_name": _clean(env.get("CI_PIPELINE_NAME")),
        "job_id": _clean(env.get("CI_JOB_ID")),
        "job_name": _clean(env.get("CI_JOB_NAME")),
        "stage": _clean(env.get("CI_JOB_STAGE")),
        "commit": _clean(env.get("CI_COMMIT_SHA")),
        "ref": _clean(env.get("CI_COMMIT_REF_NAME")),
        "repository": project,
        "event": _clean(env.get("CI_PIPELINE_SOURCE")),
        "actor": _clean(env.get("GITLAB_USER_LOGIN")),
        "url": _clean(env.get("CI_PIPELINE_URL")),
        "job_url": _clean(env.get("CI_JOB_URL")),
        "group": (project, pipeline),
    }


def _airflow(env: Mapping[str, str]) -> dict[str, Any]:
    dag, dag_run = _clean(env.get("AIRFLOW_CTX_DAG_ID")), _clean(env.get("AIRFLOW_CTX_DAG_RUN_ID"))
    task = _clean(env.get("AIRFLOW_CTX_TASK_ID"))
    return {
        "pipeline_id": dag_run,
        "pipeline_name": dag,
        "job_id": f"{dag_run}/{task}" if dag_run and task else task,
        "job_name": task,
        "attempt": _int(env.get("AIRFLOW_CTX_TRY_NUMBER")),
        "actor": _clean(env.get("AIRFLOW_CTX_DAG_OWNER")),
        "group": (dag, dag_run),
    }


def _prefect_runtime() -> dict[str, Any]:
    """The flow and task run Prefect's context holds, when this code runs inside one (only when the
    user's code imported Prefect already: importing it costs seconds; and never through its API,
    which ``prefect.runtime`` calls outside a run context)."""
    if "prefect" not in sys.modules:
        return {}
    try:
        from prefect.context import FlowRunContext, TaskRunContext  # type: ignore[import-not-found,unused-ignore]

        fields: dict[str, Any] = {}
        flow_context = FlowRunContext.get()
        flow_run = getattr(flow_context, "flow_run", None)
        if flow_run is not None:
            fields["pipeline_id"] = _clean(getattr(flow_run, "id", None))
            fields["run_name"] = _clean(getattr(flow_run, "name", None))
            fields["attempt"] = _int(getattr(flow_run, "run_count", None))
            fields["pipeline_name"] = _clean(getattr(getattr(flow_context, "flow", None), "name", None))
        task_run = getattr(TaskRunContext.get(), "task_run", None)
        if task_run is not None:
            fields["job_id"] = _clean(getattr(task_run, "id", None))
            fields["job_name"] = _clean(getattr(task_run, "name", None))
        return fields
    except Exception:  # noqa: BLE001 - an older or broken Prefect: the environment variables still count
        return {}


def _prefect(env: Mapping[str, str]) -> dict[str, Any]:
    runtime = {k: v for k, v in _prefect_runtime().items() if v is not None}
    fields: dict[str, Any] = {
        "pipeline_id": _clean(env.get("PREFECT__FLOW_RUN_ID")) or _clean(env.get("PREFECT__RUNTIME__FLOW_RUN__ID")),
        "pipeline_name": _clean(env.get("PREFECT__RUNTIME__FLOW_RUN__FLOW_NAME")),
        "run_name": _clean(env.get("PREFECT__RUNTIME__FLOW_RUN__NAME")),
        "attempt": _int(env.get("PREFECT__RUNTIME__FLOW_RUN__RUN_COUNT")),
        "job_id": _clean(env.get("PREFECT__RUNTIME__TASK_RUN__ID")),
        "job_name": _clean(env.get("PREFECT__RUNTIME__TASK_RUN__NAME")),
        **runtime,
    }
    fields["group"] = (None, fields["pipeline_id"])
    return fields


def _kubeflow(env: Mapping[str, str]) -> dict[str, Any]:
    # KFP sets KFP_POD_NAME (and KFP_POD_UID) on its pods; Argo Workflows, which runs them, sets
    # ARGO_WORKFLOW_NAME/ARGO_WORKFLOW_UID (the KFP run id) and ARGO_NODE_ID. KFP_RUN_ID is not set by
    # KFP itself: a pipeline may pass it (dsl.PIPELINE_JOB_ID_PLACEHOLDER) and then it wins.
    workflow = _clean(env.get("ARGO_WORKFLOW_NAME"))
    pod = _clean(env.get("KFP_POD_NAME"))
    run_id = _clean(env.get("KFP_RUN_ID")) or _clean(env.get("ARGO_WORKFLOW_UID")) or workflow
    return {
        "pipeline_id": run_id,
        "pipeline_name": workflow,
        "job_id": _clean(env.get("ARGO_NODE_ID")) or pod,
        "pod": pod,
        "namespace": _clean(env.get("KFP_NAMESPACE")),
        "group": (None, run_id),
    }


def _flag(name: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda env: (env.get(name) or "").strip().lower() not in ("", "0", "false")


def _present(name: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda env: bool((env.get(name) or "").strip())


SYSTEMS: tuple[tuple[str, Callable[[Mapping[str, str]], bool], Callable[[Mapping[str, str]], dict[str, Any]]], ...] = (
    ("airflow", _present("AIRFLOW_CTX_DAG_ID"), _airflow),
    (
        "prefect",
        lambda env: (
            _present("PREFECT__FLOW_RUN_ID")(env)
            or _present("PREFECT__RUNTIME__FLOW_RUN__ID")(env)
            or bool(_prefect_runtime().get("pipeline_id"))
        ),
        _prefect,
    ),
    ("kubeflow", _present("KFP_POD_NAME"), _kubeflow),
    ("gitlab-ci", _flag("GITLAB_CI"), _gitlab),
    ("github-actions", _flag("GITHUB_ACTIONS"), _github),
)


def detect(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``ci/`` fields for this process's environment (empty outside any supported system)."""
    env = os.environ if environ is None else environ
    for system, matches, read in SYSTEMS:
        if not matches(env):
            continue
        fields = read(env)
        scope, pipeline_id = fields.pop("group", (None, None))
        out: dict[str, Any] = {"system": system}
        if pipeline_id:
            out["pipeline"] = ":".join(part for part in (system, scope, pipeline_id) if part)
        out.update({key: value for key, value in fields.items() if value is not None})
        return out
    return {}


def capture(run: Any) -> None:
    """Assign the detected fields under ``ci/`` (nothing when ``RUNSTORE_CAPTURE_CI=0`` or outside CI)."""
    if not enabled():
        return
    fields = detect()
    if fields:
        run["ci"].assign(fields)
