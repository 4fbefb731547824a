"""``runstore import mlflow``: an mlruns folder written by mlflow itself (experiments, nested runs,
params, metric histories with steps and timestamps, tags, artifacts, statuses, times) arrives
exactly; importing again adds nothing, and metrics logged since are appended."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.entities import Metric  # noqa: E402
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
    # Written last but older: MLflow's value at the step is still the one with the latest timestamp.
    client.log_metric(pid, "f1", 0.9, timestamp=MS + 50, step=3)
    client.log_metric(pid, "f1", 0.6, timestamp=MS + 40, step=3)
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
    assert "2 runs (2 new" in out and "1 deleted runs" in out and "403 points" in out

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
    assert client.get_run(pid).data.metrics["f1"] == 0.9
    assert [(s, v) for s, v, _ in points(run, "f1")] == [(3, 0.9)]
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


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[str]:
    """A real ``mlflow server`` (the full package of the matrix cell) on 127.0.0.1: a SQLite backend store
    and a temporary artifact root served through its artifact proxy, as a team runs one."""
    if not (Path(sys.executable).parent / "mlflow").exists():
        pytest.fail("the cell's virtualenv has no `mlflow` command: it needs the full mlflow package")
    root = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"]
    command += ["--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with open(root / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    pytest.fail(f"mlflow server exited:\n{(root / 'server.log').read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url + "/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            shutil.rmtree(root, ignore_errors=True)


def test_runs_logged_to_a_real_mlflow_server_arrive_exactly_and_a_second_import_adds_nothing(
    server: Any, mlflow_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``runstore import mlflow --uri http://...`` against a real MLflow tracking server (its REST API,
    SQL store and artifact proxy), with runs logged by the stock client the way training code does."""
    LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the fluent API's server, for this test only
    client = MlflowClient(tracking_uri=mlflow_server)
    name = f"real server {uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name, tags={"owner": "vision"})

    with mlflow.start_run(experiment_id=experiment_id, run_name="sweep", tags={"team": "vision"}) as parent:
        pid = parent.info.run_id
        mlflow.log_params({"optimizer": "adam", "lr": "1e-05", "seed": "0042"})
        mlflow.set_tag("mlflow.note.content", "the sweep's parent")
        loss = {step: (step * 0.25 - 3.0, (MS + step * 1500) / 1000.0) for step in range(300)}
        history = [Metric("val/loss", v, int(t * 1000), s) for s, (v, t) in loss.items()]
        client.log_batch(pid, metrics=history)
        # The same step twice: MLflow's latest value is the later timestamp, whatever the order of writes.
        client.log_metric(pid, "acc", 0.75, timestamp=MS + 20, step=0)
        client.log_metric(pid, "acc", 0.5, timestamp=MS + 10, step=0)
        client.log_metric(pid, "acc", 0.875, timestamp=MS + 30, step=1)
        client.log_metric(pid, "diverged", float("nan"), timestamp=MS, step=0)
        (tmp_path / "out" / "model" / "sub").mkdir(parents=True)
        (tmp_path / "out" / "report.txt").write_text("accuracy 0.75\n")
        (tmp_path / "out" / "model" / "weights.bin").write_bytes(bytes(range(256)) * 40)
        (tmp_path / "out" / "model" / "sub" / "config.json").write_text('{"depth": 6}')
        mlflow.log_artifacts(str(tmp_path / "out"))
        estimator = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        with warnings.catch_warnings():  # mlflow's own notes on type hints and environments
            warnings.simplefilter("ignore")
            logged = mlflow.sklearn.log_model(estimator, name="classifier", pip_requirements=["scikit-learn"])
        with mlflow.start_run(experiment_id=experiment_id, run_name="trial-1", nested=True) as child:
            cid = child.info.run_id
            mlflow.log_param("depth", "6")
            client.log_metric(cid, "val/loss", 1.5, timestamp=MS + 6_000, step=7)
        client.set_terminated(cid, status="FAILED")
        with mlflow.start_run(experiment_id=experiment_id, run_name="trial-2", nested=True) as killed:
            kid2 = killed.info.run_id
        client.set_terminated(kid2, status="KILLED")
    gone = client.create_run(experiment_id, run_name="deleted")
    client.delete_run(gone.info.run_id)
    source = {r.info.run_id: r for r in client.search_runs([experiment_id])}
    assert len(source) == 3

    target = f"alice/it-real-{uuid.uuid4().hex[:8]}"
    code = cli(
        ["--url", server.url, "--api-token", server.token, "import", "mlflow", "--uri", mlflow_server]
        + ["--project", target, "--experiment", name, "--no-progress"]
    )
    assert code == 0

    kwargs = {"project": target, "url": server.url, "api_token": server.token, "progress": False}
    again = import_source("mlflow", mlflow_server, experiments=[experiment_id], **kwargs)
    assert (again.runs_created, again.runs_resumed, again.runs_unchanged, again.points) == (0, 0, 3, 0), again.lines()
    assert again.fields == 0 and again.files == 0 and again.runs_failed == 0

    def read(run_id: str) -> runstore.Run:
        return runstore.init_run(
            project=target, with_id=again.run_ids[run_id], mode="read-only", api_token=server.token, url=server.url
        )

    run = read(pid)
    info = source[pid].info
    assert run["import/source_id"].fetch() == pid
    assert run["sys/name"].fetch() == "sweep"
    assert run["sys/description"].fetch() == "the sweep's parent"
    assert run["sys/state"].fetch() == "finished"
    assert creation_time(run).timestamp() == pytest.approx(info.start_time / 1000.0, abs=1e-3)
    assert run["import/end_time"].fetch().timestamp() == pytest.approx(info.end_time / 1000.0, abs=1e-3)
    assert run["mlflow/experiment_id"].fetch() == experiment_id
    assert run["parameters/optimizer"].fetch() == "adam"
    assert run["parameters/lr"].fetch() == "1e-05" and run["parameters/seed"].fetch() == "0042"
    assert run["tags/team"].fetch() == "vision"
    assert run["mlflow/user"].fetch() == source[pid].data.tags["mlflow.user"]
    assert [(s, v, t) for s, v, t in points(run, "val/loss")] == [
        (s, pytest.approx(v), pytest.approx(t, abs=1e-3)) for s, (v, t) in loss.items()
    ]
    assert [(s, v) for s, v, _ in points(run, "acc")] == [(0, 0.75), (1, 0.875)]
    diverged = points(run, "diverged")
    assert len(diverged) == 1 and diverged[0][1] != diverged[0][1]  # NaN arrives as NaN
    files = {f["relpath"] for f in run["artifacts"].fetch_files_list()}
    assert files == {"report.txt", "model/weights.bin", "model/sub/config.json"}
    back = run["artifacts"].download(tmp_path / "back")
    for relpath in files:
        assert (back / relpath).read_bytes() == (tmp_path / "out" / relpath).read_bytes()
    # MLflow 3 keeps a logged model apart from the run's artifacts: it arrives under models/<name>/.
    assert run["models/classifier/model_id"].fetch() == logged.model_id
    model_files = {f["relpath"] for f in run["models/classifier/files"].fetch_files_list()}
    assert {"MLmodel", "model.skops"} <= model_files or {"MLmodel", "model.pkl"} <= model_files, model_files
    model_back = run["models/classifier/files"].download(tmp_path / "model-back")
    assert (model_back / "MLmodel").read_text() == Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_logged_model(logged.model_id).artifact_location + "/MLmodel",
            dst_path=str(tmp_path / "m"),
        )
    ).read_text()

    trial = read(cid)
    assert trial["sys/name"].fetch() == "trial-1"
    assert trial["sys/state"].fetch() == "failed"
    assert trial["parameters/depth"].fetch() == "6"
    assert trial["import/parent_id"].fetch() == pid
    assert trial["sys/group_tags"].fetch() == {"sweep"} and run["sys/group_tags"].fetch() == {"sweep"}
    assert creation_time(trial).timestamp() == pytest.approx(source[cid].info.start_time / 1000.0, abs=1e-3)
    assert [(s, v) for s, v, _ in points(trial, "val/loss")] == [(7, 1.5)]
    assert read(kid2)["sys/state"].fetch() == "aborted"
    assert gone.info.run_id not in again.run_ids

    # Logged since: only the new points are appended.
    log_metrics(client, pid, range(300, 320))
    resumed = import_source("mlflow", mlflow_server, experiments=[name], **kwargs)
    assert (resumed.runs_resumed, resumed.runs_unchanged, resumed.points) == (1, 2, 20), resumed.lines()
    assert series_counts(server, target)[again.run_ids[pid]]["val/loss"] == 320
