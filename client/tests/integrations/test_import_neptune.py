"""``runstore import neptune``: neptune-exporter's layout (parquet parts with its published schema, and
the files folder), built here with pyarrow: every attribute type, float series with decimal steps,
string and file series, tags, files and a fork arrive exactly; importing again adds nothing, and a
run whose later part appears is continued."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import runstore  # noqa: E402
from runstore.cli import main as cli  # noqa: E402
from runstore.importers import import_source  # noqa: E402

from .import_helpers import creation_time, points, series_counts  # noqa: E402

# neptune-exporter's SCHEMA (its model.py), column for column.
SCHEMA = pa.schema(
    [
        ("project_id", pa.string()),
        ("run_id", pa.string()),
        ("attribute_path", pa.string()),
        ("attribute_type", pa.string()),
        ("step", pa.decimal128(18, 6)),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("string_value", pa.string()),
        ("bool_value", pa.bool_()),
        ("datetime_value", pa.timestamp("ms", tz="UTC")),
        ("string_set_value", pa.list_(pa.string())),
        ("file_value", pa.struct([("path", pa.string())])),
        (
            "histogram_value",
            pa.struct([("type", pa.string()), ("edges", pa.list_(pa.float64())), ("values", pa.list_(pa.float64()))]),
        ),
    ]
)
PROJECT = "acme-org/speech-models"
UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def row(run_id: str, path: str, kind: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {name: None for name in SCHEMA.names}
    base.update(project_id=PROJECT, run_id=run_id, attribute_path=path, attribute_type=kind, **values)
    return base


def write_part(folder: Path, run_id: str, part: int, rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCHEMA), folder / f"{run_id}_part_{part}.parquet", compression="snappy"
    )


def ms(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=round(seconds * 1000))


def base_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """RUN-1's rows in two parts (the second holds the later loss points and the file series)."""
    r = "RUN-1"
    meta = [
        row(r, "sys/custom_run_id", "string", string_value="whisper-base"),
        row(r, "sys/name", "string", string_value="whisper-ft"),
        row(r, "sys/creation_time", "datetime", datetime_value=T0),
        row(r, "sys/tags", "string_set", string_set_value=["baseline", "fp16"]),
        row(r, "sys/description", "string", string_value="the base run"),
        row(r, "sys/owner", "string", string_value="ada"),
        row(r, "sys/failed", "bool", bool_value=False),
        row(r, "config/lr", "float", float_value=0.001),
        row(r, "config/epochs", "int", int_value=3),
        row(r, "config/use_amp", "bool", bool_value=True),
        row(r, "config/data/cutoff", "datetime", datetime_value=T0 - dt.timedelta(days=30)),
        row(r, "config/name", "string", string_value="base"),
        row(r, "config/langs", "string_set", string_set_value=["en", "pl"]),
        row(r, "files/config", "file", file_value={"path": "acme-org_speech-models/RUN-1/config.json"}),
        row(r, "files/dataset", "file_set", file_value={"path": "acme-org_speech-models/RUN-1/dataset"}),
        row(r, "files/missing", "file", file_value={"path": "acme-org_speech-models/RUN-1/gone.bin"}),
    ]
    meta += [
        row(r, "logs/stdout", "string_series", step=Decimal(i), timestamp=ms(i), string_value=f"epoch {i}")
        for i in range(3)
    ]
    meta += [
        row(
            r,
            "weights",
            "histogram_series",
            step=Decimal(0),
            timestamp=ms(0),
            histogram_value={"type": "COUNTING", "edges": [0.0, 1.0], "values": [3.0]},
        )
    ]
    first = meta + [
        row(r, "metrics/loss", "float_series", step=Decimal(i), timestamp=ms(i * 0.25), float_value=1.0 / (i + 1))
        for i in range(600)
    ]
    second = [
        row(r, "metrics/loss", "float_series", step=Decimal(i), timestamp=ms(i * 0.25), float_value=1.0 / (i + 1))
        for i in range(600, 1000)
    ] + [
        row(
            r,
            "preds",
            "file_series",
            step=Decimal(i),
            timestamp=ms(500 + i),
            file_value={"path": f"acme-org_speech-models/RUN-1/preds/{i}.png"},
        )
        for i in range(2)
    ]
    return first, second


def fork_rows() -> list[dict[str, Any]]:
    r = "RUN-2"
    rows = [
        row(r, "sys/custom_run_id", "string", string_value="whisper-lr-drop"),
        row(r, "sys/name", "string", string_value="whisper-ft"),
        row(r, "sys/creation_time", "datetime", datetime_value=T0 + dt.timedelta(hours=2)),
        row(r, "sys/forking/parent", "string", string_value="RUN-1"),
        row(r, "sys/forking/step", "float", float_value=500.5),
        row(r, "config/lr", "float", float_value=0.0001),
    ]
    rows += [
        row(
            r,
            "metrics/loss",
            "float_series",
            step=Decimal("500.5") + Decimal("0.5") * i,
            timestamp=ms(7200 + i),
            float_value=0.5 - i / 1000,
        )
        for i in range(200)
    ]
    return rows


def build(root: Path, *, second_part: bool = True) -> Path:
    data = root / "data" / "acme-org_speech-models_3f2a"
    files = root / "files" / "acme-org_speech-models" / "RUN-1"
    (files / "dataset" / "sub").mkdir(parents=True, exist_ok=True)
    (files / "preds").mkdir(parents=True, exist_ok=True)
    (files / "config.json").write_text(json.dumps({"lr": 0.001}))
    (files / "dataset" / "train.csv").write_text("a,b\n1,2\n")
    (files / "dataset" / "sub" / "test.csv").write_text("a,b\n3,4\n")
    for i in range(2):
        (files / "preds" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * 16)
    first, second = base_rows()
    write_part(data, "RUN-1", 0, first)
    if second_part:
        write_part(data, "RUN-1", 1, second)
    write_part(data, "RUN-2", 0, fork_rows())
    return data


def test_neptune_exporter_output_arrives_exactly_and_a_second_import_adds_nothing(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "exports"
    build(root)
    workspace = "alice"
    project = "alice/speech-models"
    code = cli(
        [
            "--url",
            server.url,
            "--api-token",
            server.token,
            "import",
            "neptune",
            str(root),
            "--workspace",
            workspace,
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 runs (2 new" in out
    assert "1 histogram series points (Runstore has no histogram type)" in out
    assert "1 files missing from the files folder" in out

    kwargs = {"workspace": workspace, "url": server.url, "api_token": server.token, "progress": False}
    again = import_source("neptune", str(root), **kwargs)
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
            project=project,
            with_id=again.run_ids[f"{PROJECT}/{source_id}"],
            mode="read-only",
            api_token=server.token,
            url=server.url,
        )

    run = read("RUN-1")
    assert run["import/source_id"].fetch() == f"{PROJECT}/RUN-1"
    assert run["sys/name"].fetch() == "whisper-base"
    assert run["sys/description"].fetch() == "the base run"
    assert run["sys/tags"].fetch() == {"baseline", "fp16"}
    assert run["sys/group_tags"].fetch() == {"whisper-ft"}
    assert creation_time(run) == T0
    assert run["sys/state"].fetch() == "finished"
    assert run["config/lr"].fetch() == 0.001
    assert run["config/epochs"].fetch() == 3
    assert run["config/use_amp"].fetch() is True
    assert run["config/data/cutoff"].fetch() == T0 - dt.timedelta(days=30)
    assert run["config/name"].fetch() == "base"
    assert run["config/langs"].fetch() == {"en", "pl"}
    assert run["import/sys/owner"].fetch() == "ada"
    assert not run.exists("import/step_multiplier")
    loss = points(run, "metrics/loss")
    assert [(s, v, t) for s, v, t in loss] == [
        (i, 1.0 / (i + 1), pytest.approx(ms(i * 0.25).timestamp(), abs=1e-3)) for i in range(1000)
    ]
    assert [(s, v) for s, v, _ in points(run, "logs/stdout")] == [(0, "epoch 0"), (1, "epoch 1"), (2, "epoch 2")]
    assert json.loads(run["files/config"].download(tmp_path / "config.json").read_text()) == {"lr": 0.001}
    assert sorted(f["relpath"] for f in run["files/dataset"].fetch_files_list()) == ["sub/test.csv", "train.csv"]
    assert [f["step"] for f in run["preds"].fetch_files_list()] == [0, 1]
    assert run["preds"].download(tmp_path / "p1", step=1).read_bytes() == b"\x89PNG\r\n\x1a\n" + bytes([1]) * 16
    assert not run.exists("weights") and not run.exists("files/missing")

    fork = read("RUN-2")
    assert fork["sys/name"].fetch() == "whisper-lr-drop"
    assert fork["sys/group_tags"].fetch() == {"whisper-ft"}
    assert fork["import/fork/parent"].fetch() == "RUN-1"
    assert fork["import/fork/step"].fetch() == 500.5
    assert fork["import/step_multiplier"].fetch() == 10  # steps 500.5, 501.0, ... become 5005, 5010, ...
    assert creation_time(fork) == T0 + dt.timedelta(hours=2)
    got = points(fork, "metrics/loss")
    assert [(s, v) for s, v, _ in got] == [(5005 + 5 * i, pytest.approx(0.5 - i / 1000)) for i in range(200)]


def test_neptune_import_continues_when_a_later_part_appears(server: Any, tmp_path: Path) -> None:
    root = tmp_path / "exports"
    data = build(root, second_part=False)
    project = f"alice/nep-{tmp_path.name[-8:].lower()}".replace("_", "-")
    kwargs = {"project": project, "url": server.url, "api_token": server.token, "progress": False}
    first = import_source("neptune", str(root), **kwargs)
    assert (first.runs_created, first.points) == (2, 600 + 3 + 200)
    write_part(data, "RUN-1", 1, base_rows()[1])
    later = import_source("neptune", str(root / "data"), files_path=root / "files", **kwargs)
    assert (later.runs_resumed, later.runs_unchanged, later.points, later.files) == (1, 1, 402, 2)
    counts = series_counts(server, project)[later.run_ids[f"{PROJECT}/RUN-1"]]
    assert counts == {"metrics/loss": 1000, "logs/stdout": 3, "preds": 2}
