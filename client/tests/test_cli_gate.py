"""``runstore runs ls --format`` and ``runstore compare`` as a CI gate: output a script can parse and
exit statuses a pipeline can act on (0 ok, 1 empty, 2 usage, 3 server/network, 4 gate), against a
live server."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, free_port

import runstore
from runstore.cli import main

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


class World:
    def __init__(self, server: Server, project: str, ids: dict[str, str]):
        self.server = server
        self.project = project
        self.ids = ids  # name -> human id


@pytest.fixture(scope="module")
def world(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Three finished runs: a baseline, a better candidate, and a weak one (a pipe in its name)."""
    project = "alice/gate"
    runs = {
        "base": ({"lr": 0.01, "batch": 32, "optimizer": "adam"}, 0.90, [0.5, 0.3, 0.2]),
        "cand": ({"lr": 0.001, "batch": 32, "dropout": 0.1}, 0.93, [0.4, 0.25, 0.15]),
        "weak|one": ({"lr": 0.1, "batch": 64, "optimizer": "sgd"}, 0.80, [0.9, 0.8, 0.7]),
    }
    ids = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNSTORE_HOME", str(tmp_path_factory.mktemp("gate-home")))
        mp.setenv("RUNSTORE_CAPTURE_CI", "0")
        for name, (params, acc, losses) in runs.items():
            run = runstore.init_run(
                project=project,
                name=name,
                api_token=server.token,
                url=server.url,
                capture_stdout=False,
                capture_stderr=False,
                capture_hardware_metrics=False,
                capture_source=False,
                capture_environment=False,
                flush_period=0.1,
            )
            run["parameters"] = params
            run["eval/acc"] = acc
            run["train/loss"].extend(losses)
            run["data/rows"] = 1000
            ids[name] = run["sys/id"].fetch()
            run.stop()
    yield World(server, project, ids)


def cli(capsys: pytest.CaptureFixture[str], world: World, *args: str) -> tuple[int, str, str]:
    """The real CLI's main() in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(["--url", world.server.url, "--api-token", world.server.token, *args])
    out, err = capsys.readouterr()
    return code, out, err


def ls(capsys, world, *args):
    return cli(capsys, world, "runs", "ls", "--project", world.project, *args)


# -- runs ls: formats ----------------------------------------------------------------------------
def test_runs_ls_json_lists_the_matching_runs_with_typed_values(capsys, world):
    code, out, err = ls(
        capsys,
        world,
        "--query",
        "eval/acc > 0.85",
        "--columns",
        "sys/name,eval/acc,train/loss",
        "--sort",
        "eval/acc",
        "--format",
        "json",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["project"] == world.project and document["query"] == "eval/acc > 0.85"
    assert document["columns"] == ["sys/id", "sys/name", "eval/acc", "train/loss"]
    assert document["count"] == 2
    assert [r["sys/name"] for r in document["runs"]] == ["base", "cand"]  # ascending eval/acc
    assert document["runs"][1] == {
        "sys/id": world.ids["cand"],
        "sys/name": "cand",
        "eval/acc": 0.93,
        "train/loss": 0.15,
    }
    assert "gate" not in document


def test_runs_ls_csv_has_a_header_and_one_parsable_row_per_run(capsys, world):
    code, out, err = ls(
        capsys, world, "--format", "csv", "--column", "eval/acc", "--column", "parameters/lr", "--sort=-eval/acc"
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/creation_time", "eval/acc", "parameters/lr"]
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [r["sys/name"] for r in body] == ["cand", "base", "weak|one"]
    assert [float(r["eval/acc"]) for r in body] == [0.93, 0.90, 0.80]
    assert {r["sys/state"] for r in body} == {"finished"} and {r["sys/owner"] for r in body} == {"alice"}
    for row in body:
        assert dt.datetime.fromisoformat(row["sys/creation_time"]).tzinfo is not None  # ISO 8601


def test_runs_ls_markdown_is_a_well_formed_table_with_pipes_escaped(capsys, world):
    code, out, err = ls(capsys, world, "--format", "markdown", "--columns", "sys/name,eval/acc", "--sort", "sys/name")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "| sys/id | sys/name | eval/acc |"
    assert lines[1] == "| --- | --- | --- |"
    assert len(lines) == 2 + 3
    for line in lines:
        assert line.startswith("| ") and line.endswith(" |")
        cells = re.split(r"(?<!\\)\|", line)[1:-1]  # unescaped pipes delimit the cells
        assert len(cells) == 3, line
    assert f"| {world.ids['weak|one']} | weak\\|one | 0.8 |" in lines


def test_runs_ls_table_is_the_default_format(capsys, world):
    code, out, err = ls(capsys, world, "--query", 'sys/name = "cand"', "--column", "eval/acc")
    assert code == 0, err
    header, row = out.strip().splitlines()
    assert header.split() == ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/creation_time", "eval/acc"]
    assert row.split()[:4] == [world.ids["cand"], "cand", "finished", "alice"] and row.split()[-1] == "0.93"


# -- runs ls: exit statuses ----------------------------------------------------------------------
def test_runs_ls_with_no_match_exits_0_or_1_with_fail_if_empty(capsys, world):
    code, out, _ = ls(capsys, world, "--query", "eval/acc > 0.99", "--format", "json")
    assert code == 0 and json.loads(out)["runs"] == []
    code, out, err = ls(capsys, world, "--query", "eval/acc > 0.99", "--format", "json", "--fail-if-empty")
    assert code == 1 and json.loads(out)["count"] == 0
    assert "no run matched" in err
    code, _, _ = ls(capsys, world, "--query", "eval/acc > 0.5", "--fail-if-empty")
    assert code == 0


def test_runs_ls_fail_if_exits_4_naming_each_run_that_trips_it(capsys, world):
    code, out, err = ls(capsys, world, "--fail-if", "eval/acc < 0.85", "--format", "json")
    assert code == 4
    gate = json.loads(out)["gate"]
    assert gate["passed"] is False and gate["conditions"] == ["eval/acc < 0.85"]
    assert [f["run"] for f in gate["failures"]] == [world.ids["weak|one"]]
    assert f"gate failed: {world.ids['weak|one']}: eval/acc < 0.85: eval/acc = 0.8" in err
    assert "eval/acc" in json.loads(out)["columns"]  # the tested field is fetched and shown
    code, _, err = ls(capsys, world, "--fail-if", "eval/acc < 0.5", "--fail-if", "train/loss > 1")
    assert code == 0, err
    code, out, err = ls(capsys, world, "--fail-if", "train/loss:min > 0.5", "--format", "json")
    assert code == 4 and [f["run"] for f in json.loads(out)["gate"]["failures"]] == [world.ids["weak|one"]]


def test_runs_ls_fail_if_trips_on_a_run_without_the_field(capsys, world):
    code, _, err = ls(capsys, world, "--query", 'sys/name = "base"', "--fail-if", "eval/f1 < 0.5")
    assert code == 4
    assert "eval/f1 is missing" in err


def test_runs_ls_fail_if_empty_and_a_tripped_gate_report_the_gate(capsys, world):
    code, _, _ = ls(capsys, world, "--fail-if", 'sys/state != "finished"', "--fail-if-empty")
    assert code == 0
    code, _, _ = ls(capsys, world, "--fail-if", 'sys/state = "finished"', "--fail-if-empty")
    assert code == 4
    code, _, err = ls(capsys, world, "--fail-if", 'sys/creation_time < "2020-01-01"')
    assert code == 0, err
    code, _, err = ls(capsys, world, "--fail-if", 'sys/creation_time > "2020-01-01T00:00:00Z"')
    assert code == 4, err


@pytest.mark.parametrize(
    "args",
    [
        ("--query", "eval/acc >"),  # the server refuses the query (400)
        ("--query", 'eval/acc > "high"'),  # a type error (400)
        ("--fail-if", "eval/acc about 0.9"),
        ("--fail-if", "delta eval/acc < 0"),  # delta needs two runs
        ("--format", "xml"),
        ("--limit", "0"),
        ("--timeout", "0"),
    ],
)
def test_runs_ls_usage_errors_exit_2(capsys, world, args):
    code, out, err = ls(capsys, world, *args)
    assert code == 2, (out, err)
    assert err.strip()


def test_runs_ls_usage_errors_without_a_server_exit_2(capsys, world):
    assert cli(capsys, world, "runs", "ls")[0] == 2  # --project is required
    assert cli(capsys, world, "runs", "ls", "--project", "no-slash")[0] == 2
    code, _, err = cli(capsys, world, "runs", "ls", "--project", "alice/does-not-exist")
    assert code == 2, err


def test_runs_ls_unreachable_server_exits_3(capsys, world):
    port = free_port()
    code = main(
        [
            "--url",
            f"http://127.0.0.1:{port}",
            "--api-token",
            "t",
            "runs",
            "ls",
            "--project",
            world.project,
            "--timeout=2",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 3
    assert "gave up" in err
    code = main(
        ["--url", f"http://127.0.0.1:{port}", "--api-token", "t", "runs", "ls", "--project", "a/b", "--timeout", "1"]
    )
    assert code == 3


def test_runs_ls_refused_token_exits_3(capsys, world):
    code = main(["--url", world.server.url, "--api-token", "not-a-token", "runs", "ls", "--project", world.project])
    assert code == 3


def test_runs_ls_exit_statuses_from_the_installed_command(world):
    env = {**os.environ, "RUNSTORE_API_TOKEN": world.server.token, "RUNSTORE_URL": world.server.url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "runstore.cli", "runs", "ls", "--project", world.project, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("--format", "json").returncode == 0
    assert run("--query", "eval/acc > 2", "--fail-if-empty").returncode == 1
    assert run("--query", "(").returncode == 2
    assert run("--bogus").returncode == 2
    assert run("--fail-if", "eval/acc <= 0.8").returncode == 4


# -- compare -------------------------------------------------------------------------------------
def compare(capsys, world, a, b, *args):
    return cli(capsys, world, "compare", world.ids[a], world.ids[b], "--project", world.project, *args)


def test_compare_markdown_gives_metric_deltas_and_changed_parameters(capsys, world):
    code, out, err = compare(capsys, world, "base", "cand")
    assert code == 0, err
    a, b = world.ids["base"], world.ids["cand"]
    lines = out.strip().splitlines()
    assert lines[0] == f"### Runstore: {a} → {b}"
    assert f"[{a}]({world.server.url}/w/alice/gate/runs/{a}/) base (finished)" in lines[2]
    table = lines[lines.index(f"| metric | {a} | {b} | Δ | Δ % |") :]
    assert table[1] == "| --- | ---: | ---: | ---: | ---: |"
    assert "| data/rows | 1000 | 1000 | +0 | +0.00% |" in table
    assert "| eval/acc | 0.9 | 0.93 | +0.03 | +3.33% |" in table
    assert "| train/loss | 0.2 | 0.15 | -0.05 | -25.00% |" in table
    assert not any("parameters/" in line or "sys/" in line for line in table[: table.index("")])
    assert "#### Parameters: 1 changed, 1 added, 1 removed, 1 unchanged" in lines
    params = lines[lines.index(f"| parameter | {a} | {b} |") :]
    assert params[2:5] == [
        "| parameters/dropout | — | 0.1 |",
        "| parameters/lr | 0.01 | 0.001 |",
        "| parameters/optimizer | adam | — |",
    ]


def test_compare_json_is_machine_readable(capsys, world):
    code, out, err = compare(capsys, world, "base", "cand", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["a"]["id"] == world.ids["base"] and document["b"]["name"] == "cand"
    assert document["b"]["url"] == f"{world.server.url}/w/alice/gate/runs/{world.ids['cand']}/"
    metrics = {m["path"]: m for m in document["metrics"]}
    assert set(metrics) == {"data/rows", "eval/acc", "train/loss"}
    assert metrics["eval/acc"]["a"] == 0.9 and metrics["eval/acc"]["b"] == 0.93
    assert metrics["eval/acc"]["delta"] == pytest.approx(0.03)
    assert metrics["train/loss"]["relative"] == pytest.approx(-0.25)
    assert document["parameters"] == [
        {"path": "parameters/dropout", "a": None, "b": 0.1, "change": "added"},
        {"path": "parameters/lr", "a": 0.01, "b": 0.001, "change": "changed"},
        {"path": "parameters/optimizer", "a": "adam", "b": None, "change": "removed"},
    ]
    assert document["unchanged_parameters"] == 1
    assert "gate" not in document


def test_compare_takes_runs_by_human_id_full_reference_or_uuid(capsys, world):
    uuid_of = {}
    for name in ("base", "cand"):
        code, out, _ = compare(capsys, world, name, name, "--format", "json")
        uuid_of[name] = json.loads(out)["a"]["uuid"]
    code, out, err = cli(
        capsys, world, "compare", f"{world.project}/{world.ids['base']}", uuid_of["cand"], "--format", "json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert (document["a"]["id"], document["b"]["id"]) == (world.ids["base"], world.ids["cand"])


def test_compare_metric_restricts_the_compared_fields(capsys, world):
    code, out, _ = compare(capsys, world, "base", "cand", "--format", "json", "--metric", "eval")
    assert [m["path"] for m in json.loads(out)["metrics"]] == ["eval/acc"]


def test_compare_fail_if_is_evaluated_on_run_b(capsys, world):
    code, out, err = compare(capsys, world, "base", "cand", "--fail-if", "eval/acc < 0.9")
    assert code == 0, err
    assert "**Gate passed**" in out
    code, out, err = compare(capsys, world, "cand", "weak|one", "--fail-if", "eval/acc < 0.9", "--format", "json")
    assert code == 4
    gate = json.loads(out)["gate"]
    assert gate["passed"] is False and gate["failures"][0]["run"] == world.ids["weak|one"]
    assert "eval/acc = 0.8" in err


def test_compare_fail_if_delta_tests_b_minus_a(capsys, world):
    code, out, _ = compare(capsys, world, "base", "cand", "--fail-if", "delta eval/acc < -0.01")
    assert code == 0
    code, out, err = compare(capsys, world, "cand", "weak|one", "--fail-if", "delta eval/acc < -0.01")
    assert code == 4
    assert "**Gate failed**" in out and "delta eval/acc = -0.13" in err
    code, _, err = compare(capsys, world, "base", "cand", "--fail-if", "train/loss:min > 0.2")
    assert code == 0, err
    code, _, err = compare(capsys, world, "base", "weak|one", "--fail-if", "train/loss:min > 0.2")
    assert code == 4 and "train/loss:min = 0.7" in err


def test_compare_fail_if_on_a_metric_run_b_lacks_exits_4(capsys, world):
    code, _, err = compare(capsys, world, "base", "cand", "--fail-if", "eval/f1 < 0.5")
    assert code == 4 and "eval/f1 is missing" in err


def test_compare_usage_errors_exit_2(capsys, world):
    assert cli(capsys, world, "compare", world.ids["base"])[0] == 2  # RUN_B missing
    code, _, err = cli(capsys, world, "compare", world.ids["base"], world.ids["cand"])  # short ids need --project
    assert code == 2 and "project" in err
    code, _, err = compare(capsys, world, "base", "cand", "--format", "csv")
    assert code == 2
    code, _, err = cli(capsys, world, "compare", "alice/gate/GATE-999", world.ids["cand"], "--project", world.project)
    assert code == 2, err  # an unknown run
    code, _, err = compare(capsys, world, "base", "cand", "--fail-if", "delta eval/acc < low")
    assert code == 2


def test_compare_unreachable_server_exits_3(capsys, world):
    code = main(
        [
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--api-token",
            "t",
            "compare",
            "a/b/X-1",
            "a/b/X-2",
            "--timeout",
            "1",
        ]
    )
    assert code == 3
