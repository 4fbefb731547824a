"""``runstore import mlflow --uri URI|PATH``: an MLflow tracking server or a local ``mlruns`` folder
(``pip install 'runstore[mlflow]'``), read with MLflow's own client.

Each experiment becomes a project (``--workspace``: ``<workspace>/<experiment name>``; or all go
into ``--project``), each run a run: its MLflow run id is the source id, its name, start time
(``sys/creation_time``) and status (FINISHED → finished, FAILED → failed, KILLED → aborted) are
kept, the end time goes to ``import/end_time``. Params become ``parameters/<key>`` (strings, as
MLflow stores them), metrics float series with their full history (steps and timestamps), tags
``tags/<key>`` (MLflow's own ``mlflow.*`` tags go to ``mlflow/<key>``), and the artifacts a file
set ``artifacts``. A parent run and its children (``mlflow.parentRunId``) share a group named
after the parent (``sys/group_tags``); a child keeps ``import/parent_id``. Deleted runs are skipped.

Where several points share a step, the one MLflow reports as the metric's value is kept (the latest
timestamp, then the highest value), whatever order the server lists them in. MLflow 3's logged models
(``mlflow.<flavor>.log_model``, stored apart from the run's artifacts) whose source run is the run
arrive as the file set ``models/<name>/files`` and the field ``models/<name>/model_id``, the layout of
Runstore's own MLflow-compatible API."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from .core import Series, SourceRun, clean_path, clean_slug, to_datetime

SOURCE = "mlflow"
STATES = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "aborted"}
PARENT_TAG = "mlflow.parentRunId"


def _client(location: str) -> Any:
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigurationError(
            f"importing from MLflow needs the mlflow package: pip install 'runstore[mlflow]' ({exc})"
        ) from None
    if "://" not in location and not location.startswith(("file:", "sqlite:", "databricks")):
        path = Path(location).resolve()
        if not path.is_dir():
            raise ConfigurationError(f"{location} is neither an MLflow tracking URI nor an mlruns folder")
        location = path.as_uri()
    if location.startswith("file:"):
        # MLflow 3 refuses its file store unless asked; reading an existing mlruns folder is what we want.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=location), ViewType


def read_runs(
    location: str,
    *,
    project: str | None,
    workspace: str | None = None,
    experiments: list[str] | None = None,
) -> tuple[int, Iterator[SourceRun]]:
    client, view_type = _client(location)
    chosen = []
    for experiment in client.search_experiments(view_type=view_type.ACTIVE_ONLY):
        if experiments and experiment.name not in experiments and experiment.experiment_id not in experiments:
            continue
        chosen.append(experiment)
    listed: list[tuple[Any, Any]] = []
    deleted = 0
    for experiment in chosen:
        token = None
        while True:
            page = client.search_runs(
                [experiment.experiment_id], run_view_type=view_type.ALL, max_results=1000, page_token=token
            )
            for run in page:
                if run.info.lifecycle_stage == "deleted":
                    deleted += 1
                else:
                    listed.append((experiment, run))
            token = page.token
            if not token:
                break
    names = {run.info.run_id: run.info.run_name or run.info.run_id for _, run in listed}
    parents = {run.data.tags.get(PARENT_TAG) for _, run in listed} - {None}

    def runs() -> Iterator[SourceRun]:
        for index, (experiment, run) in enumerate(listed):
            target = project or f"{workspace}/{clean_slug(experiment.name)}"
            with tempfile.TemporaryDirectory(prefix="runstore-import-mlflow-") as tmp:
                src = read_run(client, run, target, Path(tmp), names, parents)
                if index == 0 and deleted:
                    src.skip("deleted runs", deleted)
                yield src

    return len(listed), runs()


def read_run(client: Any, run: Any, project: str, tmp: Path, names: dict[str, str], parents: set[str]) -> SourceRun:
    info, data = run.info, run.data
    tags = dict(data.tags)
    src = SourceRun(
        source=SOURCE,
        source_id=info.run_id,
        project=project,
        name=info.run_name or tags.get("mlflow.runName") or "",
        description=tags.get("mlflow.note.content", ""),
        creation_time=to_datetime(info.start_time / 1000.0) if info.start_time else None,
        state=STATES.get(info.status, "finished"),
    )
    src.fields["import/end_time"] = to_datetime(info.end_time / 1000.0) if info.end_time else None
    src.fields["mlflow/status"] = info.status
    src.fields["mlflow/experiment_id"] = info.experiment_id
    parent = tags.get(PARENT_TAG)
    if parent:
        src.group = names.get(parent, parent)
        src.fields["import/parent_id"] = parent
    elif info.run_id in parents:
        src.group = names.get(info.run_id, info.run_id)
    for key, value in data.params.items():
        path = clean_path(key, prefix="parameters")
        if path is None:
            src.skip("params with an empty key")
        else:
            src.fields[path] = value
    for key, value in tags.items():
        if key in ("mlflow.runName", "mlflow.note.content"):
            continue
        if key.startswith("mlflow."):
            path = clean_path(key[len("mlflow.") :].replace(".", "/"), prefix="mlflow")
        else:
            path = clean_path(key, prefix="tags")
        if path is None:
            src.skip("tags with an empty key")
        else:
            src.fields[path] = value
    for key in data.metrics:
        path = clean_path(key)
        if path is None:
            src.skip("metrics with an empty key")
            continue
        series = src.series[path] = Series("float")
        # MLflow's value at a step is its latest timestamp, then its highest value; a SQL store lists a
        # history in no set order, so sort, and the importer's "last point of a step wins" agrees.
        for metric in sorted(client.get_metric_history(info.run_id, key), key=_metric_order):
            series.add(int(metric.step), float(metric.value), metric.timestamp / 1000.0)
    if client.list_artifacts(info.run_id):
        local = Path(client.download_artifacts(info.run_id, "", str(tmp / "artifacts")))
        if any(p.is_file() for p in local.rglob("*")):
            src.file_sets["artifacts"] = local
    read_logged_models(client, info, src, tmp / "models")
    return src


def _metric_order(metric: Any) -> tuple[int, int, float]:
    value = float(metric.value)
    return int(metric.step), int(metric.timestamp), -math.inf if math.isnan(value) else value


def read_logged_models(client: Any, info: Any, src: SourceRun, tmp: Path) -> None:
    """MLflow 3's logged models whose source run is this run (an MLflow 2 server has none)."""
    search = getattr(client, "search_logged_models", None)
    if search is None:
        return
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    found, token = [], None
    try:
        while True:
            page = search(
                [info.experiment_id],
                filter_string=f"source_run_id = '{info.run_id}'",
                max_results=100,
                page_token=token,
            )
            found.extend(page)
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        if exc.get_http_status_code() == 404:  # an MLflow 2 server: no logged models
            return
        raise
    taken: set[str] = set()
    for model in sorted(found, key=lambda m: (m.creation_timestamp or 0, m.model_id)):
        base = (clean_path(model.name or "") or "model").replace("/", "_")
        folder, n = base, 1
        while folder in taken:
            n += 1
            folder = f"{base}-{n}"
        taken.add(folder)
        src.fields[f"models/{folder}/model_id"] = model.model_id
        target = tmp / model.model_id
        target.mkdir(parents=True)
        local = Path(
            download_artifacts(
                artifact_uri=model.artifact_location, dst_path=str(target), tracking_uri=client.tracking_uri
            )
        )
        if any(p.is_file() for p in local.rglob("*")):
            src.file_sets[f"models/{folder}/files"] = local
