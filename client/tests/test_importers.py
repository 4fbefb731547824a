"""The importers' shared core (``runstore.importers.core``), against the live server: an interrupted
import continues without duplicating a point, a run keeps its source's creation time and id, and
the ``runstore import`` command says what is missing. Each source's reader is tested against data
its own library wrote, in the version matrix (tests/integrations/test_import_*.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import runstore
from runstore._internal.api import Api
from runstore.cli import main as cli
from runstore.handler import Handler
from runstore.importers.core import Series, SourceRun, import_runs

CREATED = dt.datetime(2019, 7, 1, 12, 30, 15, 500000, tzinfo=dt.timezone.utc)


def source_run(project: str, artifact: Path, n: int) -> SourceRun:
    src = SourceRun(
        source="test",
        source_id="exp/42",
        project=project,
        name="imported",
        creation_time=CREATED,
        state="failed",
        tags=["old"],
        group="sweep-1",
    )
    src.fields.update({"parameters/lr": 0.1, "parameters/name": "base"})
    src.series["loss"] = Series("float", list(range(n)), [i * 0.5 for i in range(n)], [1e9 + i for i in range(n)])
    # Two points at step 3: the later one is kept.
    src.series["notes"] = Series("string", [0, 3, 3, 9], ["a", "b", "c", "d"], [1e9, 1e9 + 1, 1e9 + 2, 1e9 + 3])
    src.files["model"] = artifact
    return src


def test_an_interrupted_import_continues_where_it_stopped_without_duplicating_a_point(
    server: Any, project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights" * 100)
    api = Api(server.url, server.token)
    n = 25_000  # three chunks of at most 10,000 points
    calls = {"n": 0}
    extend = Handler.extend

    def interrupted(self: Handler, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the series
        extend(self, *args, **kwargs)

    monkeypatch.setattr(Handler, "extend", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_runs(api, "test", [source_run(project, artifact, n)], total=1, progress=False)
    monkeypatch.setattr(Handler, "extend", extend)

    resumed = import_runs(api, "test", [source_run(project, artifact, n)], total=1, progress=False)
    assert (resumed.runs_created, resumed.runs_resumed, resumed.runs_failed) == (0, 1, 0), resumed.lines()
    assert resumed.points == n - 10_000 + 3  # the rest of the loss series, and the notes
    assert resumed.files == 0 and resumed.fields == 0  # written before the interruption
    assert resumed.skipped == {"points at a step already seen in the same series (the last one written is kept)": 1}

    again = import_runs(api, "test", [source_run(project, artifact, n)], total=1, progress=False)
    assert (again.runs_unchanged, again.points, again.fields, again.files) == (1, 0, 0, 0)

    run = runstore.init_run(
        project=project, with_id=again.run_ids["exp/42"], mode="read-only", api_token=server.token, url=server.url
    )
    loss = run["loss"].fetch_values()
    assert loss["step"].tolist() == list(range(n))
    assert loss["value"].tolist() == [i * 0.5 for i in range(n)]
    assert [t.timestamp() for t in loss["timestamp"]] == pytest.approx([1e9 + i for i in range(n)])
    assert run["notes"].fetch_values()[["step", "value"]].values.tolist() == [[0, "a"], [3, "c"], [9, "d"]]
    assert run["sys/creation_time"].fetch() == CREATED
    assert run["sys/state"].fetch() == "failed"
    assert run["sys/tags"].fetch() == {"old"} and run["sys/group_tags"].fetch() == {"sweep-1"}
    assert run["import/source_id"].fetch() == "exp/42" and run["import/source"].fetch() == "test"
    assert run["sys/custom_run_id"].fetch() == "import:test:exp/42"
    assert run["parameters/lr"].fetch() == 0.1
    assert run["model"].download(tmp_path / "back.bin").read_bytes() == b"weights" * 100


def test_import_without_a_project_or_the_source_library_says_what_to_do(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--url", server.url, "--api-token", server.token, "import"]
    assert cli([*base, "tensorboard", str(tmp_path)]) == 1
    assert "--project" in capsys.readouterr().err
    missing = {"tensorboard": "tensorboard", "wandb": "wandb"}
    for source, package in missing.items():
        try:
            __import__(package)
        except ImportError:
            assert cli([*base, source, str(tmp_path), "--project", "alice/x"]) == 1
            assert f"pip install 'runstore[{source}]'" in capsys.readouterr().err
