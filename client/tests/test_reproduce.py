"""`runstore reproduce` and `runstore artifacts verify`, end to end: a tiny git repository and data set made
here, a training script run in its own small virtualenv, then the run recreated from what it recorded."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runstore.cli import main

CLIENT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the test environment's bin: `uv` lives there

TRAIN = """\
import sys
from pathlib import Path

import runstore

FACTOR = 2

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
lr = float(args["--lr"])
run = runstore.init_run(capture_stdout=False, capture_stderr=False, capture_hardware_metrics=False, flush_period=0.1)
run["parameters/lr"] = lr
run["data/train"].track_files(args["--data"])
total = sum(len(p.read_bytes()) for p in sorted(Path(args["--data"]).iterdir()))
result = lr * FACTOR * total
Path("result.txt").write_text(repr(result))
run["result"] = result
print(run["sys/id"].fetch())
run.stop()
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """A run of `train.py` from a git repository with an uncommitted change, in a virtualenv holding only
    the client (installed from its folder, so the package list has a direct reference)."""
    if not (BIN / "uv").exists():
        pytest.fail("the test environment has no uv; scripts/test.sh installs it")
    tmp = tmp_path_factory.mktemp("reproduce")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RUNSTORE_URL": server.url,
        "RUNSTORE_API_TOKEN": server.token,
        "RUNSTORE_PROJECT": "alice/reproduce",
        "RUNSTORE_HOME": str(tmp / "rshome"),
    }
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    git(repo, "init", "--quiet")
    git(repo, "add", "train.py")
    git(repo, "commit", "--quiet", "-m", "train")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text(TRAIN.replace("FACTOR = 2", "FACTOR = 3"))  # dirty: only the diff has it
    data = tmp / "data"
    data.mkdir()
    for name, size in (("a.bin", 10), ("b.bin", 20), ("c.bin", 30)):
        (data / name).write_bytes(bytes(range(size)))
    venv = tmp / "train-venv"
    subprocess.run([BIN / "uv", "venv", "--quiet", "--python", sys.executable, venv], check=True, env=env)
    subprocess.run(
        [BIN / "uv", "pip", "install", "--quiet", "--python", venv / "bin" / "python", str(CLIENT)],
        check=True,
        env=env,
    )
    out = subprocess.run(
        [venv / "bin" / "python", "train.py", "--lr", "0.5", "--data", str(data)],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    run_id = out.stdout.strip().splitlines()[-1]
    assert (repo / "result.txt").read_text() == repr(0.5 * 3 * 60)
    return {"run": f"alice/reproduce/{run_id}", "repo": repo, "commit": commit, "data": data, "env": env}


@pytest.fixture()
def cli(trained, tmp_path, monkeypatch):
    """The command line in this process, with the training's server, token and PATH."""
    for name in ("PATH", "RUNSTORE_URL", "RUNSTORE_API_TOKEN", "RUNSTORE_PROJECT"):
        monkeypatch.setenv(name, trained["env"][name])
    return main


def test_reproduce_prints_every_step_from_what_the_run_recorded(trained, cli, tmp_path, capsys):
    assert cli(["reproduce", trained["run"], "--dir", str(tmp_path / "again")]) == 0
    plan = capsys.readouterr().out
    assert f"checkout --quiet --detach {trained['commit']}" in plan
    assert f"git clone --quiet --no-checkout {trained['repo']}" in plan
    assert "source_code/diff" in plan and " apply " in plan
    assert "environment/packages" in plan and "pip install" in plan
    assert "runstore artifacts verify" in plan and "--field data/train" in plan
    assert "3 files, 60 bytes" in plan
    again = tmp_path / "again"
    assert f"{again / 'venv' / 'bin' / 'python'} train.py --lr 0.5 --data {trained['data']}" in plan
    assert "recorded parameters: lr=0.5" in plan


def test_reproduce_apply_recreates_the_run_with_its_uncommitted_change(trained, cli, tmp_path, capsys):
    again = tmp_path / "again"
    assert cli(["reproduce", trained["run"], "--apply", str(again)]) == 0
    out = capsys.readouterr().out
    assert "data/train: " in out and "is the recorded version" in out
    # The checked-out commit had FACTOR = 2; the result matches the original only if the patch applied.
    assert (again / "source" / "result.txt").read_text() == repr(0.5 * 3 * 60)
    assert git(again / "source", "rev-parse", "HEAD") == trained["commit"]
    freeze = subprocess.run(
        [BIN / "uv", "pip", "freeze", "--python", again / "venv" / "bin" / "python"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "runstore @ file://" in freeze and "msgpack==" in freeze


def test_reproduce_apply_refuses_a_directory_that_is_not_new(trained, cli, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert cli(["reproduce", trained["run"], "--apply", str(busy)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]


def test_artifacts_verify_lists_added_removed_and_changed_files(trained, cli, tmp_path, capsys):
    assert cli(["artifacts", "verify", trained["run"]]) == 0
    assert "is the recorded version" in capsys.readouterr().out
    data = shutil.copytree(trained["data"], tmp_path / "data")
    (data / "a.bin").write_bytes(b"changed")
    (data / "b.bin").unlink()
    (data / "d.bin").write_bytes(b"new")
    assert cli(["artifacts", "verify", trained["run"], str(data), "--field", "data/train"]) == 1
    out = capsys.readouterr().out
    assert "1 added, 1 removed, 1 changed" in out
    assert "  + d.bin" in out and "  - b.bin" in out and "  ~ a.bin" in out


def test_artifacts_verify_names_the_field_it_does_not_know(trained, cli, capsys):
    assert cli(["artifacts", "verify", trained["run"], "--field", "data/test"]) == 2
    assert "no tracked data field 'data/test'" in capsys.readouterr().err
