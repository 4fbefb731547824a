"""``runstore import wandb``: offline runs written by wandb itself (config, history with steps and times,
strings, images, summary, saved files, a failed run) arrive exactly; importing again adds nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

wandb = pytest.importorskip("wandb")
np = pytest.importorskip("numpy")

import runstore  # noqa: E402
from runstore.cli import main as cli  # noqa: E402
from runstore.importers import import_source  # noqa: E402
from runstore.importers.wandb import records  # noqa: E402

from .import_helpers import creation_time, points  # noqa: E402


def history_times(folder: Path) -> dict[int, float]:
    """``_step`` → ``_timestamp`` as wandb wrote them (read with wandb's protobuf messages)."""
    from wandb.proto import wandb_internal_pb2 as pb

    times = {}
    for data in records(next(folder.glob("run-*.wandb"))):
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            row = {
                item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                for item in record.history.item
            }
            times[int(row["_step"])] = float(row["_timestamp"])
    return times


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def image(step: int) -> Any:
    array = np.zeros((6, 10, 3), dtype=np.uint8)
    array[:, :step] = 200
    return array


def test_wandb_offline_runs_arrive_exactly_and_a_second_import_adds_nothing(
    server: Any, offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.time()
    run = wandb.init(
        project="asr",
        name="conformer-small",
        notes="first try",
        tags=["baseline", "gpu"],
        group="conformer",
        config={"lr": 0.002, "optimizer": {"name": "adamw", "betas": [0.9, 0.98]}, "layers": 12, "fp16": True},
    )
    for step in range(300):
        run.log({"train/loss": 2.0 / (step + 1), "lr": 0.002 * (1 - step / 300)}, step=step)
    run.log({"note": "halfway"}, step=300)
    for step in (301, 302):
        run.log({"samples": wandb.Image(image(step - 300))}, step=step)
    run.summary["best/wer"] = 0.125
    (offline / "model.txt").write_text("weights")
    run.save(str(offline / "model.txt"), base_path=str(offline))
    run.finish()
    failed = wandb.init(project="asr", name="broken", config={"lr": 1.0})
    failed.log({"train/loss": 9.0}, step=0)
    failed.finish(exit_code=3)
    folders = sorted((offline / "wandb").glob("offline-run-*"))
    assert len(folders) == 2

    workspace, project = "alice", "alice/asr"
    code = cli(
        ["--url", server.url, "--api-token", server.token, "import", "wandb", str(offline / "wandb")]
        + ["--workspace", workspace, "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 runs (2 new" in out

    kwargs = {"workspace": workspace, "url": server.url, "api_token": server.token, "progress": False}
    again = import_source("wandb", str(offline), **kwargs)
    assert (again.runs_created, again.runs_resumed, again.runs_unchanged, again.points, again.fields, again.files) == (
        0,
        0,
        2,
        0,
        0,
        0,
    )

    def read(source_id: str) -> runstore.Run:
        return runstore.init_run(
            project=project, with_id=again.run_ids[source_id], mode="read-only", api_token=server.token, url=server.url
        )

    main = read(f"asr/{run.id}")
    assert main["import/source_id"].fetch() == f"asr/{run.id}"
    assert main["sys/name"].fetch() == "conformer-small"
    assert main["sys/description"].fetch() == "first try"
    assert main["sys/tags"].fetch() == {"baseline", "gpu"}
    assert main["sys/group_tags"].fetch() == {"conformer"}
    assert main["sys/state"].fetch() == "finished"
    assert started - 1 <= creation_time(main).timestamp() <= time.time()
    assert main["config/lr"].fetch() == 0.002
    assert main["config/optimizer/name"].fetch() == "adamw"
    assert main["config/layers"].fetch() == 12
    assert main["config/fp16"].fetch() is True
    assert main["summary/best/wer"].fetch() == 0.125
    times = history_times(folders[0] if run.id in folders[0].name else folders[1])
    loss = points(main, "train/loss")
    assert [(s, v) for s, v, _ in loss] == [(s, 2.0 / (s + 1)) for s in range(300)]
    assert [t for _, _, t in loss] == [pytest.approx(times[s], abs=1e-3) for s in range(300)]
    assert [(s, v) for s, v, _ in points(main, "note")] == [(300, "halfway")]
    assert [f["step"] for f in main["samples"].fetch_files_list()] == [301, 302]
    relpaths = {f["relpath"] for f in main["files"].fetch_files_list()}
    assert "model.txt" in relpaths
    assert (main["files"].download(offline / "back") / "model.txt").read_text() == "weights"

    broken = read(f"asr/{failed.id}")
    assert broken["sys/state"].fetch() == "failed"
    assert broken["wandb/exit_code"].fetch() == 3
    assert [(s, v) for s, v, _ in points(broken, "train/loss")] == [(0, 9.0)]
