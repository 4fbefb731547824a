"""``runstore import mlflow``: an mlruns folder written by mlflow itself (experiments, nested runs,
params, metric histories with steps and timestamps, tags, artifacts, statuses, times) arrives
exactly; importing again adds nothing, and metrics logged since are appended."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

import runstore  # noqa: E402
from runstore.cli import main as cli  # noqa: E402
from runstore.importers import import_source  # noqa: E402

from .import_helpers import creation_time, points, series_counts  # noqa: E402

MS = 1_600_000_000_000  # 2020-09-13, in MLflow's milliseconds


@pytest.fixture()
def mlruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, MlflowClient, str]:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    folder = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=folder.as_uri())
    name = f"vision sweep {uuid.uuid4().hex[:8]}"
    return folder, client, client.create_experiment(name)


def log_metrics(client: MlflowClient, run_id: str, steps: range) -> dict[int, tuple[float, float]]:
    expected = {}
    for step in steps:
        value, stamp = step * 0.25 - 3.0, MS + step * 1500
        client.log_metric(run_id, "val/loss", value, timestamp=stamp, step=step)
        expected[step] = (value, stamp / 1000.0)
    return expected


def test_mlruns_written_by_mlflow_arrive_exactly_and_a_second_import_adds_nothing(
    server: Any, mlruns: tuple[Path, MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, client, experiment_id = mlruns
    parent = client.create_run(
        experiment_id, run_name="sweep", start_time=MS, tags={"team": "vision", "mlflow.source.type": "LOCAL"}
    )
    pid = parent.info.run_id
    client.log_param(pid, "optimizer", "adam")
    client.log_param(pid, "lr", "0.003")
    loss = log_metrics(client, pid, range(0, 400))
    client.log_metric(pid, "acc", 0.5, timestamp=MS + 10, step=0)
    client.log_metric(pid, "acc", 0.75, timestamp=MS + 20, step=0)  # the same step twice: the later value is kept
    client.set_tag(pid, "mlflow.note.content", "the sweep's parent")
    artifact = tmp_path / "report.txt"
    artifact.write_text("accuracy 0.75\n")
    client.log_artifact(pid, str(artifact))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00\x01weights")
    client.log_artifacts(pid, str(tmp_path / "model"), artifact_path="model")
    client.set_terminated(pid, status="FINISHED", end_time=MS + 900_000)
    child = client.create_run(
        experiment_id, run_name="trial-1", start_time=MS + 5_000, tags={"mlflow.parentRunId": pid}
    )
    cid = child.info.run_id
    client.log_metric(cid, "val/loss", 1.5, timestamp=MS + 6_000, step=7)
    client.set_terminated(cid, status="FAILED", end_time=MS + 7_000)
    gone = client.create_run(experiment_id, run_name="deleted")
    client.delete_run(gone.info.run_id)

    workspace = "alice"
    project = f"alice/{client.get_experiment(experiment_id).name.replace(' ', '-')}"
    code = cli(
        ["--url", server.url, "--api-token", server.token, "import", "mlflow", "--uri", str(folder)]
        + ["--workspace", workspace, "--experiment", experiment_id, "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 runs (2 new" in out and "1 deleted runs" in out and "402 points" in out

    kwargs = {"workspace": workspace, "url": server.url, "api_token": server.token, "progress": False}
    again = import_source("mlflow", folder.as_uri(), experiments=[experiment_id], **kwargs)
    assert (again.runs_created, again.runs_resumed, again.runs_unchanged, again.points) == (0, 0, 2, 0)
    assert again.fields == 0 and again.files == 0

    def read(run_id: str) -> runstore.Run:
        return runstore.init_run(
            project=project, with_id=again.run_ids[run_id], mode="read-only", api_token=server.token, url=server.url
        )

    run = read(pid)
    assert run["import/source_id"].fetch() == pid
    assert run["sys/name"].fetch() == "sweep"
    assert run["sys/description"].fetch() == "the sweep's parent"
    assert run["sys/state"].fetch() == "finished"
    assert creation_time(run).timestamp() == pytest.approx(MS / 1000.0, abs=1e-3)
    assert run["import/end_time"].fetch().timestamp() == pytest.approx((MS + 900_000) / 1000.0, abs=1e-3)
    assert run["parameters/optimizer"].fetch() == "adam" and run["parameters/lr"].fetch() == "0.003"
    assert run["tags/team"].fetch() == "vision" and run["mlflow/source/type"].fetch() == "LOCAL"
    assert [(s, v, t) for s, v, t in points(run, "val/loss")] == [
        (s, pytest.approx(v), pytest.approx(t, abs=1e-3)) for s, (v, t) in loss.items()
    ]
    assert [(s, v) for s, v, _ in points(run, "acc")] == [(0, 0.75)]
    files = {f["relpath"]: f for f in run["artifacts"].fetch_files_list()}
    assert sorted(files) == ["model/weights.bin", "report.txt"]
    target = run["artifacts"].download(tmp_path / "back")
    assert (target / "model" / "weights.bin").read_bytes() == b"\x00\x01weights"
    assert (target / "report.txt").read_text() == "accuracy 0.75\n"

    kid = read(cid)
    assert kid["sys/state"].fetch() == "failed"
    assert kid["import/parent_id"].fetch() == pid
    assert kid["sys/group_tags"].fetch() == {"sweep"} and run["sys/group_tags"].fetch() == {"sweep"}
    assert creation_time(kid).timestamp() == pytest.approx((MS + 5_000) / 1000.0, abs=1e-3)
    assert [(s, v) for s, v, _ in points(kid, "val/loss")] == [(7, 1.5)]

    # Logged since: only the new points are appended.
    more = log_metrics(client, pid, range(400, 450))
    resumed = import_source("mlflow", str(folder), experiments=[experiment_id], **kwargs)
    assert (resumed.runs_resumed, resumed.runs_unchanged, resumed.points) == (1, 1, 50)
    assert series_counts(server, project)[again.run_ids[pid]]["val/loss"] == 450
    assert points(read(pid), "val/loss")[-1][:2] == (449, pytest.approx(more[449][0]))
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == "true"


def test_import_over_http_from_a_live_mlflow_tracking_server(
    server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The live MLflow server is Runstore's own MLflow-compatible API (mlflow-skinny has no server):
    runs logged there with MlflowClient are read back over MLflow's REST API into another project."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.token)
    client = MlflowClient(tracking_uri=server.url)
    source_project = f"it-src-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(f"alice/{source_project}")
    run = client.create_run(experiment_id, run_name="remote", start_time=MS)
    client.log_param(run.info.run_id, "depth", "6")
    loss = log_metrics(client, run.info.run_id, range(0, 120))
    client.set_terminated(run.info.run_id, status="KILLED", end_time=MS + 60_000)

    target = f"alice/it-dst-{uuid.uuid4().hex[:8]}"
    kwargs = {"project": target, "url": server.url, "api_token": server.token, "progress": False}
    first = import_source("mlflow", server.url, experiments=[experiment_id], **kwargs)
    assert (first.runs_created, first.points, first.runs_failed) == (1, 120, 0), first.lines()
    again = import_source("mlflow", server.url, experiments=[experiment_id], **kwargs)
    assert (again.runs_unchanged, again.points) == (1, 0)
    imported = runstore.init_run(
        project=target, with_id=again.run_ids[run.info.run_id], mode="read-only", api_token=server.token, url=server.url
    )
    assert imported["sys/state"].fetch() == "aborted"
    assert imported["parameters/depth"].fetch() == "6"
    assert creation_time(imported).timestamp() == pytest.approx(MS / 1000.0, abs=1e-3)
    assert [(s, v, t) for s, v, t in points(imported, "val/loss")] == [
        (s, pytest.approx(v), pytest.approx(t, abs=1e-3)) for s, (v, t) in loss.items()
    ]
