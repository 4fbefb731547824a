"""``runstore import tensorboard``: event files written by torch.utils.tensorboard.SummaryWriter (scalars,
images, text, hparams) arrive exactly (values, steps, wall times, creation time, source id); importing
again adds nothing, and new events in the folder are appended after what is there."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorboard")
torch_tb = pytest.importorskip("torch.utils.tensorboard")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from torch.utils.tensorboard.summary import hparams  # noqa: E402

import runstore  # noqa: E402
from runstore.cli import main as cli  # noqa: E402
from runstore.importers import import_source  # noqa: E402

from .import_helpers import creation_time, points, series_counts  # noqa: E402

T0 = 1_600_000_000.0  # 2020-09-13: the wall times the events are written with


def write_scalars(directory: Path, steps: range, *, start: float = T0) -> dict[int, tuple[float, float]]:
    expected = {}
    with torch_tb.SummaryWriter(str(directory)) as writer:
        for step in steps:
            value = 1.0 / (step + 1) + 0.125
            wall = start + step * 0.5
            writer.add_scalar("train/loss", value, step, walltime=wall)
            expected[step] = (value, wall)
    return expected


def image(step: int) -> Any:
    array = np.zeros((8, 12, 3), dtype=np.uint8)
    array[:, : step % 12] = (255, 0, 0)
    array[2, 3] = (0, step, 200)
    return array


def write_run_a(directory: Path) -> dict[str, Any]:
    loss = {}
    with torch_tb.SummaryWriter(str(directory)) as writer:
        for step in range(0, 300):
            value = math.sin(step / 10.0)
            wall = T0 + 100 + step
            writer.add_scalar("train/loss", value, step, walltime=wall)
            loss[step] = (value, wall)
        for step in (0, 5, 10):
            writer.add_image("samples/grid", image(step), step, walltime=T0 + 200 + step, dataformats="HWC")
        writer.add_text("notes", "first *note*", 0, walltime=T0 + 300)
        writer.add_text("notes", "second note", 7, walltime=T0 + 301)
        writer.add_histogram("weights", np.arange(10.0), 0, walltime=T0 + 302)
        # The hparams plugin's summaries, in the run's own folder (as Keras' and TF's hparams API write them).
        for summary in hparams({"lr": 0.003, "optimizer": "adam", "batch": 64, "bn": True}, {"hp/acc": 0.9}):
            writer.file_writer.add_summary(summary, walltime=T0 + 1)
        writer.add_scalar("first", 1.0, 0, walltime=T0)  # the earliest wall time: the run's creation time
    return {"loss": loss}


def test_tensorboard_event_files_arrive_exactly_and_a_second_import_adds_nothing(
    server: Any, project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "logs"
    expected = write_run_a(logdir / "run_a")
    b_loss = write_scalars(logdir / "nested" / "run_b", range(0, 50))

    code = cli(
        ["--url", server.url, "--api-token", server.token, "import", "tensorboard", str(logdir)]
        + ["--project", project, "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 runs (2 new" in out and "1 histogram summaries (not imported)" in out
    assert "graphs" not in out

    summary = import_source(
        "tensorboard", str(logdir), project=project, url=server.url, api_token=server.token, progress=False
    )
    assert (summary.runs_created, summary.runs_resumed, summary.runs_unchanged) == (0, 0, 2)
    assert summary.points == 0 and summary.fields == 0 and summary.files == 0
    run_ids = summary.run_ids
    assert sorted(run_ids) == ["logs/nested/run_b", "logs/run_a"]

    def read(source_id: str) -> runstore.Run:
        return runstore.init_run(
            project=project, with_id=run_ids[source_id], mode="read-only", api_token=server.token, url=server.url
        )

    run = read("logs/run_a")
    assert run["import/source_id"].fetch() == "logs/run_a"
    assert run["import/source"].fetch() == "tensorboard"
    assert run["sys/name"].fetch() == "logs/run_a"
    assert run["sys/state"].fetch() == "finished"
    assert creation_time(run).timestamp() == pytest.approx(T0, abs=1e-3)
    got = points(run, "train/loss")
    assert [p[0] for p in got] == list(range(300))
    for step, value, stamp in got:
        want_value, want_wall = expected["loss"][step]
        assert value == pytest.approx(want_value, rel=1e-6)  # float32 in the event file
        assert stamp == pytest.approx(want_wall, abs=1e-3)
    assert run["parameters/lr"].fetch() == pytest.approx(0.003)
    assert run["parameters/optimizer"].fetch() == "adam"
    assert run["parameters/batch"].fetch() == 64
    assert run["parameters/bn"].fetch() == 1  # torch's hparams() stores a bool as the number 1
    texts = points(run, "notes/text_summary")
    assert [(s, v) for s, v, _ in texts] == [(0, "first *note*"), (7, "second note")]
    assert texts[1][2] == pytest.approx(T0 + 301, abs=1e-3)
    files = run["samples/grid"].fetch_files_list()
    assert [f["step"] for f in files] == [0, 5, 10]
    for step in (0, 5, 10):
        target = run["samples/grid"].download(tmp_path / f"img-{step}", step=step)
        assert (np.asarray(Image.open(io.BytesIO(target.read_bytes())).convert("RGB")) == image(step)).all()

    other = read("logs/nested/run_b")
    assert [(s, v) for s, v, _ in points(other, "train/loss")] == [
        (s, pytest.approx(v)) for s, (v, _) in b_loss.items()
    ]
    assert creation_time(other).timestamp() == pytest.approx(T0, abs=1e-3)


def test_tensorboard_import_continues_with_the_events_written_since(server: Any, project: str, tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    first = write_scalars(logdir / "job", range(0, 1000))
    kwargs = {"project": project, "url": server.url, "api_token": server.token, "progress": False}
    assert import_source("tensorboard", str(logdir), **kwargs).points == 1000
    later = write_scalars(logdir / "job", range(1000, 1500), start=T0 + 10_000)  # a second event file
    summary = import_source("tensorboard", str(logdir), **kwargs)
    assert (summary.runs_resumed, summary.points) == (1, 500)
    counts = series_counts(server, project)
    assert list(counts.values()) == [{"train/loss": 1500}]
    run = runstore.init_run(
        project=project, with_id=summary.run_ids["tb/job"], mode="read-only", api_token=server.token, url=server.url
    )
    got = points(run, "train/loss")
    everything = {**first, **later}
    assert [(s, v, t) for s, v, t in got] == [
        (s, pytest.approx(everything[s][0], rel=1e-6), pytest.approx(everything[s][1], abs=1e-3)) for s in range(1500)
    ]
