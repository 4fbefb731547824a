"""The user-facing contract against a real server: modes, files, reads, capture, CLI."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runstore

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def test_files_file_sets_images_and_artifacts(connect, tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x00weights" * 1000)
    ckpt = tmp_path / "ckpt"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "a.bin").write_bytes(b"a" * 10)
    (ckpt / "sub" / "b.bin").write_bytes(b"b" * 20)
    run = connect()
    run["model/weights"].upload(str(weights))
    weights.write_bytes(b"changed after upload()")  # the queued copy is what gets uploaded
    run["model/checkpoints"].upload_files(str(ckpt))
    for i in range(3):
        run["samples"].append(runstore.File.as_image(np.full((4, 4, 3), i * 0.3)))
    run["data/train"].track_files(str(ckpt))
    assert run.wait(60)
    out = tmp_path / "out"
    path = run["model/weights"].download(str(out) + "/")
    assert path.read_bytes() == b"\x00weights" * 1000
    target = run["model/checkpoints"].download(str(tmp_path / "restored"))
    assert (target / "sub" / "b.bin").read_bytes() == b"b" * 20
    image = run["samples"].download(str(tmp_path / "img.png"), step=2)
    assert image.read_bytes().startswith(b"\x89PNG")
    artifact = run["data/train"].fetch()
    assert artifact["file_count"] == 2 and artifact["size"] == 30 and len(artifact["hash"]) == 64
    assert {entry.split(":")[0] for entry in artifact["files"]} == {"a.bin", "sub/b.bin"}
    assert [f["relpath"] for f in run["model/checkpoints"].fetch_files_list()] == ["a.bin", "sub/b.bin"]
    run.stop()
    assert run.status()["errors"] == 0


def test_a_file_series_of_files_from_paths_stores_each_step_in_order(connect, tmp_path):
    epochs = []
    for i in range(3):
        path = tmp_path / f"epoch{i}.txt"
        path.write_bytes(f"epoch {i}\n".encode() * (i + 1))
        epochs.append(path)
    run = connect()
    for i, path in enumerate(epochs):
        run["checkpoints"].append(runstore.File(path), step=i * 10)
        run["train/loss"].append(1.0 / (i + 1))
    run["checkpoints"].append(runstore.File.from_content(b"last", name="last.txt"))  # step 21, after the files
    run["summary"] = "done"
    assert run.wait(60)
    assert [(f["step"], f["name"]) for f in run["checkpoints"].fetch_files_list()] == [
        (0, "epoch0.txt"),
        (10, "epoch1.txt"),
        (20, "epoch2.txt"),
        (21, "last.txt"),
    ]
    for i, path in enumerate(epochs):
        assert run["checkpoints"].download(str(tmp_path / "out" / str(i)) + "/", step=i * 10).read_bytes() == (
            path.read_bytes()
        )
    assert run["checkpoints"].download(str(tmp_path / "last.txt")).read_bytes() == b"last"
    assert run["train/loss"].fetch_values()["value"].tolist() == [1.0, 0.5, 1.0 / 3]
    assert run["summary"].fetch() == "done"
    run.stop()
    assert run.status()["errors"] == 0


def test_sync_mode_acknowledges_every_call(connect):
    run = connect(mode="sync")
    run["x"] = 1
    run["loss"].append(0.5)
    assert run.status()["pending_operations"] == 0
    assert run["loss"].fetch() == 0.5
    run.stop()


def test_read_only_runs_fetch_and_refuse_writes(connect, server, project):
    run = connect(name="to-read")
    run["parameters"] = {"lr": 0.01}
    run["train/loss"].extend([0.5, 0.4, 0.3], steps=[1, 2, 5])
    run_id = run["sys/id"].fetch()
    run.stop()
    old = runstore.init_run(project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url)
    frame = old["train/loss"].fetch_values()
    assert list(frame.columns) == ["step", "value", "timestamp"]
    assert list(frame["step"]) == [1, 2, 5]
    assert old["parameters"].fetch() == {"lr": 0.01}
    assert old["sys/state"].fetch() == "finished"
    assert old.fetch()["sys"]["name"] == "to-read"
    with pytest.raises(runstore.ReadOnlyError):
        old["x"] = 1
    with pytest.raises(runstore.ReadOnlyError):
        old["train/loss"].append(1.0)
    with pytest.raises(runstore.NotFoundError):
        old["missing/field"].fetch()
    old.stop()


def test_resume_with_id_continues_series_steps(connect, project, server):
    run = connect()
    run["loss"].extend([1.0, 2.0])
    run_id = run["sys/id"].fetch()
    run.stop()
    again = connect(with_id=run_id)
    again["loss"].append(3.0)
    assert again.wait(30)
    assert list(again["loss"].fetch_values()["step"]) == [0, 1, 2]
    assert again["sys/state"].fetch() == "running"
    again.stop()


def test_same_custom_run_id_from_many_processes_is_one_run(server, project, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent("""
        import sys, runstore
        rank = sys.argv[1]
        with runstore.init_run(capture_hardware_metrics=False, capture_source=False, capture_environment=False,
                               capture_stdout=False, capture_stderr=False) as run:
            run[f"workers/{rank}/loss"].extend([0.1, 0.2])
            run.wait()
            print(run["sys/id"].fetch())
    """)
    )
    env = {
        **os.environ,
        "RUNSTORE_URL": server.url,
        "RUNSTORE_API_TOKEN": server.token,
        "RUNSTORE_PROJECT": project,
        "RUNSTORE_CUSTOM_RUN_ID": "ddp-42",
    }
    workers = [
        subprocess.Popen([PYTHON, str(script), str(rank)], env=env, stdout=subprocess.PIPE, text=True)
        for rank in range(2)
    ]
    ids = {w.communicate(timeout=120)[0].strip() for w in workers}
    assert len(ids) == 1
    read = runstore.init_run(
        project=project, with_id=ids.pop(), mode="read-only", api_token=server.token, url=server.url
    )
    assert set(read["workers"].fetch()) == {"0", "1"}


def test_fetch_runs_table(connect, server, project):
    for i, acc in enumerate([0.91, 0.95, 0.93]):
        with connect(name=f"r{i}") as run:
            run["eval/acc"] = acc
            run["train/loss"].append(1 - acc)
    proj = runstore.init_project(project, api_token=server.token, url=server.url)
    table = proj.fetch_runs_table(
        columns=["sys/id", "sys/name", "eval/acc", "train/loss"], sort_by="eval/acc", ascending=False, limit=2
    )
    frame = table.to_pandas()
    assert list(frame.columns) == ["sys/id", "sys/name", "eval/acc", "train/loss"]
    assert list(frame["eval/acc"]) == [0.95, 0.93]
    assert frame["train/loss"].iloc[0] == pytest.approx(0.05)
    newest = proj.fetch_runs_table(limit=1).to_rows()
    assert newest[0]["sys/name"] == "r2"
    good = proj.fetch_runs_table(
        query="eval/acc > 0.92", columns=["sys/name", "eval/acc"], sort_by="eval/acc", ascending=True
    )
    assert [r["sys/name"] for r in good.to_rows()] == ["r2", "r1"]
    with pytest.raises(runstore.RunstoreError):
        proj.fetch_runs_table(query="eval/acc > ")


def test_capture_records_source_environment_monitoring_and_output(server, project, monkeypatch):
    monkeypatch.setenv("RUNSTORE_MONITORING_INTERVAL", "0.2")
    run = runstore.init_run(project=project, api_token=server.token, url=server.url, flush_period=0.1)
    print("hello from training")
    sys.stderr.write("a warning line\n")
    import time

    time.sleep(1.0)
    run.stop()
    read = runstore.init_run(
        project=project, with_id=run._info["id"], mode="read-only", api_token=server.token, url=server.url
    )
    values = read.fetch()
    assert values["environment"]["python_version"].count(".") == 2
    assert values["sys"]["hostname"]
    assert "command" in values["source_code"]
    assert values["source_code"]["git"]["commit"]  # the test runs inside the repo
    assert "packages" in values["environment"]
    assert values["monitoring"]["cpu"] is not None and values["monitoring"]["process_rss"] > 0
    assert "hello from training" in list(read["monitoring/stdout"].fetch_values()["value"])
    assert "a warning line" in list(read["monitoring/stderr"].fetch_values()["value"])


def test_uncaught_exception_marks_the_run_failed(server, project, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent("""
        import runstore
        run = runstore.init_run(capture_hardware_metrics=False)
        print(run["sys/id"].fetch(), flush=True)
        run["x"] = 1
        raise RuntimeError("diverged at epoch 3")
    """)
    )
    env = {**os.environ, "RUNSTORE_URL": server.url, "RUNSTORE_API_TOKEN": server.token, "RUNSTORE_PROJECT": project}
    result = subprocess.run([PYTHON, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert "diverged" in result.stderr
    run_id = result.stdout.strip()
    read = runstore.init_run(project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url)
    assert read["sys/failed"].fetch() is True
    assert "RuntimeError: diverged at epoch 3" in read["sys/failure"].fetch()
    assert read["x"].fetch() == 1


def test_exception_in_a_with_block_marks_the_run_failed(connect):
    with pytest.raises(ValueError):
        with connect() as run:
            raise ValueError("bad batch")
    assert run["sys/state"].fetch() == "failed"
    assert "bad batch" in run["sys/failure"].fetch()


def cli(capsys, *args):
    """The CLI in this process (faster than a subprocess); returns (exit code, stdout, stderr)."""
    from runstore.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_runs_are_uploaded_by_runstore_sync_exactly_once(server, project, isolated_home, monkeypatch, capsys):
    for i in range(2):
        run = runstore.init_run(
            project=project,
            mode="offline",
            name=f"off{i}",
            capture_hardware_metrics=False,
            capture_stdout=False,
            capture_stderr=False,
        )
        run["parameters"] = {"i": i}
        run["loss"].extend([0.3, 0.2, 0.1])
        run.stop()
    env = {
        **os.environ,
        "RUNSTORE_HOME": str(isolated_home),
        "RUNSTORE_API_TOKEN": server.token,
        "RUNSTORE_URL": server.url,
    }
    status = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "2 queues" in status.stdout
    monkeypatch.setenv("RUNSTORE_API_TOKEN", server.token)
    monkeypatch.setenv("RUNSTORE_URL", server.url)
    code, out, err = cli(capsys, "sync")
    assert code == 0, err
    assert out.count("synced") == 2
    assert "nothing to sync" in cli(capsys, "sync")[1]
    code, out, err = cli(capsys, "runs", "ls", "--project", project, "--column", "loss")
    assert code == 0, err
    assert "off0" in out and "off1" in out and "0.1" in out
    code, out, err = cli(capsys, "runs", "ls", "--project", project, "--query", "parameters/i = 1")
    assert code == 0, err
    assert "off1" in out and "off0" not in out
    proj = runstore.init_project(project, api_token=server.token, url=server.url)
    rows = proj.fetch_runs_table(columns=["sys/name", "loss", "parameters/i", "sys/state"]).to_rows()
    assert sorted((r["sys/name"], r["loss"], r["parameters/i"], r["sys/state"]) for r in rows) == [
        ("off0", 0.1, 0, "finished"),
        ("off1", 0.1, 1, "finished"),
    ]


def test_cli_download(connect, server, project, tmp_path, monkeypatch, capsys):
    source = tmp_path / "w.bin"
    source.write_bytes(b"weights")
    with connect() as run:
        run["model/weights"].upload(source)
        run_id = run["sys/id"].fetch()
    monkeypatch.setenv("RUNSTORE_API_TOKEN", server.token)
    monkeypatch.setenv("RUNSTORE_URL", server.url)
    code, _out, err = cli(capsys, "download", f"{project}/{run_id}", "model/weights", str(tmp_path / "dl" / "w.bin"))
    assert code == 0, err
    assert (tmp_path / "dl" / "w.bin").read_bytes() == b"weights"


def test_a_forked_child_logs_through_its_own_workers(connect):
    run = connect()
    run["parent"] = 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            run["child/loss"].extend([0.5, 0.25])
            run.stop(timeout=60)
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert run.wait(30)
    assert run["child/loss"].fetch() == 0.25
    assert run["parent"].fetch() == 1
    run.stop()


def test_offline_resume_with_id_continues_the_server_steps(
    connect, server, project, isolated_home, monkeypatch, capsys
):
    run = connect()
    run["loss"].extend([1.0, 2.0, 3.0])
    run["notes"].append("first")
    run_id = run["sys/id"].fetch()
    run.stop()
    offline = runstore.init_run(
        project=project,
        with_id=run_id,
        mode="offline",
        capture_hardware_metrics=False,
        capture_stdout=False,
        capture_stderr=False,
        capture_source=False,
        capture_environment=False,
    )
    offline["loss"].extend([4.0, 5.0])
    offline["notes"].append("second")
    offline["new"].append(7.0)
    offline.stop()
    monkeypatch.setenv("RUNSTORE_API_TOKEN", server.token)
    code, _out, err = cli(capsys, "--url", server.url, "sync")
    assert code == 0, err
    read = runstore.init_run(project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url)
    loss = read["loss"].fetch_values()
    assert list(loss["step"]) == [0, 1, 2, 3, 4] and list(loss["value"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(read["notes"].fetch_values()["step"]) == [0, 1]
    assert list(read["new"].fetch_values()["step"]) == [0]


def test_fetch_runs_table_sends_a_query_longer_than_8_kb(connect, server, project):
    for name, acc in (("low", 0.5), ("high", 0.9)):
        with connect(name=name) as run:
            run["eval/acc"] = acc
    proj = runstore.init_project(project, api_token=server.token, url=server.url)
    names = " or ".join(f'sys/name = "{"n" * 20}{i}"' for i in range(230))  # none matches
    query = f"eval/acc > 0.7 or ({names})"
    assert len(query.encode()) > 8 * 1024
    rows = proj.fetch_runs_table(query=query, columns=["sys/name", "eval/acc"], sort_by="eval/acc").to_rows()
    assert rows == [{"sys/name": "high", "eval/acc": 0.9}]
    both = proj.fetch_runs_table(query=f"eval/acc > 0 or ({names})", columns=["sys/name"], limit=2).to_rows()
    assert [r["sys/name"] for r in both] == ["high", "low"]


def test_cli_runs_ls_sends_a_query_longer_than_8_kb(connect, server, project):
    with connect(name="only") as run:
        run["eval/acc"] = 0.9
    names = " or ".join(f'sys/name = "{"m" * 20}{i}"' for i in range(230))
    env = {**os.environ, "RUNSTORE_API_TOKEN": server.token, "RUNSTORE_URL": server.url}
    result = subprocess.run(
        [PYTHON, "-m", "runstore.cli", "runs", "ls", "--project", project, "--query", f"eval/acc > 0.5 or ({names})"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "only" in result.stdout


def test_fail_right_after_init_run_ends_the_run_failed(connect, server, project):
    # The server's answer to the run's creation (state "running") may arrive after fail(): it must not
    # turn the run back into one that stop() marks finished.
    run = connect()
    run["x"] = 1
    run.fail("diverged before the server answered")
    run_id = run["sys/id"].fetch()
    run.stop()
    read = runstore.init_run(project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url)
    assert read["sys/state"].fetch() == "failed"
    assert read["sys/failed"].fetch() is True
