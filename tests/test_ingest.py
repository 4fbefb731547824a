import itertools
import math
import threading

import msgpack
import pytest
from django.contrib.auth.models import User
from django.db import connection

from runs.models import Attribute, FloatPoint, RunBatch

from .conftest import batch, run_url
from .roles import role_matrix


def fields(client, run):
    response = client.get(run_url(run, "attributes"))
    assert response.status_code == 200
    return {f["path"]: f for f in response.json()["fields"]}


def test_assign_infers_types_and_flattens_dicts(owner_api, run):
    ops = [
        {
            "op": "assign",
            "path": "parameters",
            "value": {"lr": 0.01, "layers": 4, "opt": {"name": "adam", "nesterov": False}},
        },
        {"op": "assign", "path": "data/tags", "value": ["b", "a", "b"]},
        {"op": "assign", "path": "started", "value": "2026-01-02T03:04:05Z", "type": "datetime"},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    got = fields(owner_api, run)
    assert got["parameters/lr"] == {"path": "parameters/lr", "type": "float", "value": 0.01}
    assert got["parameters/layers"]["type"] == "int" and got["parameters/layers"]["value"] == 4
    assert got["parameters/opt/name"]["value"] == "adam"
    assert got["parameters/opt/nesterov"] == {"path": "parameters/opt/nesterov", "type": "bool", "value": False}
    assert got["data/tags"]["value"] == ["a", "b"]
    assert got["started"]["value"].startswith("2026-01-02T03:04:05")


def test_int_into_float_field_is_accepted_but_other_type_changes_conflict(owner_api, run):
    assert batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.5}]).status_code == 200
    assert batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 1}], seq=2).status_code == 200
    assert fields(owner_api, run)["eval/acc"]["value"] == 1.0
    response = batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": "high"}], seq=3)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "type_conflict"
    assert error["path"] == "eval/acc" and error["stored_type"] == "float" and error["sent_type"] == "string"
    assert error["op_index"] == 0


def test_series_append_round_trips_nan_and_infinity_in_json_and_msgpack(owner_api, run):
    values = [1.5, math.nan, math.inf, -math.inf, -2.0]
    response = batch(owner_api, run, [{"op": "append", "path": "train/loss", "values": values}], fmt="msgpack")
    assert response.status_code == 200, response.content
    assert response.json()["points"] == 5
    raw = owner_api.get(run_url(run, "series/points"), {"path": "train/loss"}).json()
    assert raw["steps"] == [0, 1, 2, 3, 4]
    assert raw["values"] == [1.5, "NaN", "Infinity", "-Infinity", -2.0]
    packed = owner_api.get(run_url(run, "series/points"), {"path": "train/loss"}, HTTP_ACCEPT="application/msgpack")
    unpacked = msgpack.unpackb(packed.content)
    assert (
        math.isnan(unpacked["values"][1]) and unpacked["values"][2] == math.inf and unpacked["values"][3] == -math.inf
    )
    summary = fields(owner_api, run)["train/loss"]["value"]
    assert summary["count"] == 5 and summary["min"] == "-Infinity" and summary["max"] == "Infinity"
    assert summary["last"] == -2.0 and summary["avg"] == pytest.approx(-0.25)


def test_json_nan_strings_and_literals_are_accepted(owner_api, run):
    body = '{"stream": "s", "seq": 1, "ops": [{"op": "append", "path": "x", "values": [NaN, "Infinity", 1]}]}'
    response = owner_api.post(run_url(run, "batch"), body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert owner_api.get(run_url(run, "series/points"), {"path": "x"}).json()["values"] == ["NaN", "Infinity", 1.0]


def test_steps_continue_and_must_increase(owner_api, run):
    assert (
        batch(owner_api, run, [{"op": "append", "path": "acc", "values": [0.1, 0.2], "steps": [5, 9]}]).status_code
        == 200
    )
    assert batch(owner_api, run, [{"op": "append", "path": "acc", "values": [0.3]}], seq=2).status_code == 200
    assert owner_api.get(run_url(run, "series/points"), {"path": "acc"}).json()["steps"] == [5, 9, 10]
    response = batch(owner_api, run, [{"op": "append", "path": "acc", "values": [0.4], "steps": [10]}], seq=3)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "step_order" and response.json()["error"]["last_step"] == 10
    response = batch(owner_api, run, [{"op": "append", "path": "acc", "values": [1, 2], "steps": [20, 20]}], seq=4)
    assert response.status_code == 400 and response.json()["error"]["field"] == "ops[0].steps[1]"


def test_retried_batch_is_applied_once(owner_api, run):
    ops = [{"op": "append", "path": "loss", "values": [1.0, 2.0]}]
    first = batch(owner_api, run, ops, seq=7)
    again = batch(owner_api, run, ops, seq=7)
    assert first.json()["applied"] is True
    assert again.status_code == 200 and again.json() == {"applied": False, "duplicate": True, "ops": 1, "points": 0}
    assert FloatPoint.objects.count() == 2
    other_stream = batch(owner_api, run, [{"op": "append", "path": "loss", "values": [3.0]}], seq=7, stream="other")
    assert other_stream.json()["applied"] is True
    assert FloatPoint.objects.count() == 3


def test_a_bad_operation_rejects_the_whole_batch(owner_api, run):
    batch(owner_api, run, [{"op": "assign", "path": "n", "value": 1}])
    ops = [
        {"op": "assign", "path": "a", "value": 1},
        {"op": "append", "path": "s", "values": [1.0, 2.0]},
        {"op": "assign", "path": "n", "value": "text"},
    ]
    response = batch(owner_api, run, ops, seq=2)
    assert response.status_code == 409
    assert response.json()["error"]["op_index"] == 2
    got = fields(owner_api, run)
    assert "a" not in got and "s" not in got
    assert FloatPoint.objects.count() == 0
    assert not RunBatch.objects.filter(seq=2).exists()
    # the same seq can be sent again once fixed
    assert batch(owner_api, run, ops[:2], seq=2).json()["applied"] is True


def test_tags_add_remove_and_delete(owner_api, run):
    ops = [
        {"op": "add_tags", "path": "sys/tags", "values": ["best", "x"]},
        {"op": "remove_tags", "path": "sys/tags", "values": ["base", "x"]},
        {"op": "assign", "path": "tmp", "value": 1},
        {"op": "delete", "path": "tmp"},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    got = fields(owner_api, run)
    assert got["sys/tags"]["value"] == ["best"]
    assert "tmp" not in got
    assert owner_api.get(run_url(run)).json()["tags"] == ["best"]


def test_delete_series_then_reuse_path_with_another_type(owner_api, run):
    batch(owner_api, run, [{"op": "append", "path": "m", "values": [1.0, 2.0]}])
    ops = [{"op": "delete", "path": "m"}, {"op": "assign", "path": "m", "value": "now a string"}]
    assert batch(owner_api, run, ops, seq=2).status_code == 200
    assert fields(owner_api, run)["m"]["type"] == "string"
    assert FloatPoint.objects.count() == 0


def test_sys_name_and_description_update_the_run(owner_api, run):
    ops = [
        {"op": "assign", "path": "sys/name", "value": "renamed"},
        {"op": "assign", "path": "sys/description", "value": "d"},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    body = owner_api.get(run_url(run)).json()
    assert body["name"] == "renamed" and body["description"] == "d"


@pytest.mark.parametrize(
    "op, status, field, words",
    [
        ({"op": "assign", "path": "a//b", "value": 1}, 400, "ops[0].path", "empty segment"),
        ({"op": "assign", "path": "/a", "value": 1}, 400, "ops[0].path", "empty segment"),
        ({"op": "assign", "path": "a/\x07b", "value": 1}, 400, "ops[0].path", "control"),
        ({"op": "assign", "path": "x" * 600, "value": 1}, 400, "ops[0].path", "limit is 512"),
        ({"op": "assign", "path": "", "value": 1}, 400, "ops[0].path", "empty"),
        ({"op": "assign", "path": 5, "value": 1}, 400, "ops[0].path", "string"),
        ({"op": "assign", "path": "sys/id", "value": "X"}, 400, "ops[0].path", "read-only"),
        ({"op": "assign", "path": "a", "value": None}, 400, "ops[0].value", "cannot store"),
        ({"op": "assign", "path": "a", "value": 2**70}, 400, "ops[0].value", "64-bit"),
        ({"op": "assign", "path": "a", "value": 1, "type": "complex"}, 400, "ops[0].type", "unknown type"),
        ({"op": "assign", "path": "a", "value": "soon", "type": "datetime"}, 400, "ops[0].value", "ISO 8601"),
        ({"op": "append", "path": "a", "values": []}, 400, "ops[0].values", "non-empty"),
        ({"op": "append", "path": "a", "values": [1, "x"]}, 400, "ops[0].values[1]", "number"),
        ({"op": "append", "path": "a", "values": [True]}, 400, "ops[0].values[0]", "number"),
        ({"op": "append", "path": "a", "values": [1], "steps": [1, 2]}, 400, "ops[0].steps", "as long as"),
        ({"op": "append", "path": "a", "values": [1], "steps": [-1]}, 400, "ops[0].steps[0]", "between"),
        ({"op": "append", "path": "a", "values": [1], "timestamps": ["x"]}, 400, "ops[0].timestamps[0]", "unix"),
        ({"op": "append", "path": "a", "kind": "image", "values": [1]}, 400, "ops[0].kind", "unknown kind"),
        ({"op": "frobnicate", "path": "a"}, 400, "ops[0].op", "unknown operation"),
        ({"op": "upload", "path": "f", "sha256": "zz"}, 400, "ops[0].sha256", "hex"),
        ({"op": "upload", "path": "f", "sha256": "a" * 64}, 400, "ops[0].sha256", "not uploaded"),
        ({"op": "add_tags", "path": "t", "values": "x"}, 400, "ops[0].values", "list of strings"),
    ],
)
def test_bad_operations_get_a_4xx_naming_the_field(owner_api, run, op, status, field, words):
    response = batch(owner_api, run, [{"op": "assign", "path": "ok", "value": 1}][:0] + [op])
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert Attribute.objects.filter(run=run).exclude(path="sys/tags").count() == 0


@pytest.mark.parametrize(
    "body, content_type, field",
    [
        ("{not json", "application/json", None),
        ('{"seq": 1, "ops": []}', "application/json", "stream"),
        ('{"stream": "s", "seq": -1, "ops": []}', "application/json", "seq"),
        ('{"stream": "s", "seq": true, "ops": []}', "application/json", "seq"),
        ('{"stream": "s", "seq": 1}', "application/json", "ops"),
        ('{"stream": "s", "seq": 1, "ops": {}}', "application/json", "ops"),
        ('{"stream": "s", "seq": 1, "ops": [1]}', "application/json", "ops[0]"),
        ("[1, 2]", "application/json", None),
        ("\xff\xfe", "application/msgpack", None),
    ],
)
def test_malformed_bodies_get_400(owner_api, run, body, content_type, field):
    response = owner_api.post(run_url(run, "batch"), body, content_type=content_type)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"]
    if field:
        assert error["field"] == field


def test_oversized_batches_get_413(owner_api, run, settings):
    settings.RUNSTORE_MAX_BATCH_OPS = 3
    response = batch(owner_api, run, [{"op": "assign", "path": f"p{i}", "value": i} for i in range(4)])
    assert response.status_code == 413 and response.json()["error"]["field"] == "ops"
    settings.RUNSTORE_MAX_BATCH_POINTS = 10
    response = batch(owner_api, run, [{"op": "append", "path": "s", "values": [1.0] * 11}])
    assert response.status_code == 413
    settings.RUNSTORE_MAX_BATCH_BYTES = 2048
    response = batch(owner_api, run, [{"op": "assign", "path": "big", "value": "x" * 4000}])
    assert response.status_code == 413


def test_string_series(owner_api, run):
    ops = [{"op": "append", "path": "stdout", "kind": "string", "values": ["a", "b"], "timestamps": [1.0, 2.0]}]
    assert batch(owner_api, run, ops).status_code == 200
    points = owner_api.get(run_url(run, "series/points"), {"path": "stdout"}).json()
    assert points["values"] == ["a", "b"] and points["timestamps"] == [1.0, 2.0] and points["type"] == "string_series"
    response = owner_api.get(run_url(run, "series"), {"path": "stdout"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "wrong_type"


@pytest.mark.parametrize(
    "op, field, words",
    [
        ({"values": [1.0, 2.0, True]}, "ops[0].values[2]", "number"),
        ({"values": [1.0, 2.0], "steps": [0, True]}, "ops[0].steps[1]", "integer"),
        ({"values": [1.0, 2.0], "steps": [3, 3]}, "ops[0].steps[1]", "increase"),
        ({"values": [1.0, 2.0], "steps": [0, 2**63]}, "ops[0].steps[1]", "between"),
        ({"values": [1.0, 2.0, 3.0], "timestamps": [1.0, 2.0, math.nan]}, "ops[0].timestamps[2]", "unix"),
        ({"values": [1.0, 2.0], "timestamps": [1.0, math.inf]}, "ops[0].timestamps[1]", "unix"),
        ({"values": [1.0, 2.0], "timestamps": [-1.0, 1.0]}, "ops[0].timestamps[0]", "unix"),
        ({"values": [1.0, 2.0], "timestamps": [1.0, 253402300800.0]}, "ops[0].timestamps[1]", "unix"),
    ],
)
def test_a_bad_element_in_a_long_float_append_is_named(owner_api, run, op, field, words):
    response = batch(owner_api, run, [{"op": "append", "path": "loss", **op}], fmt="msgpack")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field and words in error["message"]
    assert FloatPoint.objects.count() == 0


def test_integral_float_steps_and_integer_timestamps_are_accepted(owner_api, run):
    ops = [{"op": "append", "path": "loss", "values": [1, 2.5], "steps": [3.0, 4], "timestamps": [10, 11.5]}]
    assert batch(owner_api, run, ops, fmt="msgpack").status_code == 200
    points = owner_api.get(run_url(run, "series/points"), {"path": "loss"}).json()
    assert points == {
        "path": "loss",
        "type": "float_series",
        "steps": [3, 4],
        "timestamps": [10.0, 11.5],
        "values": [1.0, 2.5],
        "next_after_step": None,
    }


def test_summary_of_a_series_over_several_batches(owner_api, run):
    first = [{"op": "append", "path": "loss", "values": [3.0, 1.0, 2.0]}]
    second = [{"op": "append", "path": "loss", "values": [math.nan, 5.0, -math.inf]}]
    assert batch(owner_api, run, first, fmt="msgpack").status_code == 200
    assert batch(owner_api, run, second, seq=2, fmt="msgpack").status_code == 200
    summary = fields(owner_api, run)["loss"]["value"]
    assert summary["count"] == 6 and summary["min"] == "-Infinity" and summary["max"] == 5.0
    assert summary["last"] == "-Infinity" and summary["avg"] == pytest.approx(11.0 / 4)


def test_a_sum_beyond_the_float_range_is_not_a_server_error(owner_api, run):
    ops = [{"op": "append", "path": "big", "values": [1.7e308, 1.7e308]}]
    assert batch(owner_api, run, ops, fmt="msgpack").status_code == 200
    assert fields(owner_api, run)["big"]["value"]["max"] == 1.7e308


def test_batch_endpoint_answers_each_role(world, run):
    ops = [{"op": "assign", "path": "x", "value": 1}]
    seqs = itertools.count(1)
    expected = {"owner": 200, "contributor": 200, "viewer": 403, "stranger": 404, "anonymous": 401}
    codes = {"anonymous": "not_authenticated", "stranger": "not_found", "viewer": "permission_denied"}

    def send(url):
        return lambda client: client.post(url, {"stream": "s", "seq": next(seqs), "ops": ops}, format="json")

    def batches():
        return RunBatch.objects.filter(run=run).count()

    by_path = role_matrix(
        world,
        send(run_url(run, "batch")),
        expected,
        check=dict.fromkeys(["stranger", "viewer"], lambda _: batches() == 0),
    )
    by_uuid = role_matrix(
        world,
        send(f"/api/v1/runs/{run.uuid}/batch"),
        expected,
        check=dict.fromkeys(["stranger", "viewer"], lambda _: batches() == 2),
    )
    for responses in (by_path, by_uuid):
        assert {role: responses[role].json()["error"]["code"] for role in codes} == codes
    assert batches() == 4  # the contributor's and the owner's, by path and by id


def test_project_actions_agree_with_the_policy(db, run, owner, contributor, viewer, stranger):
    """The one-query check used per batch gives the same answer as ``can`` for every kind of grant."""
    from django.contrib.auth.models import AnonymousUser, Group
    from guardian.shortcuts import assign_perm

    from projects import permissions

    project = run.project
    via_group, via_project, superuser, inactive = (
        User.objects.create_user(name) for name in ("grouped", "project-only", "root", "gone")
    )
    team = Group.objects.create(name="team")
    via_group.groups.add(team)
    assign_perm("all_projects_view", team, project.workspace)
    assign_perm("all_projects_write", team, project.workspace)
    assign_perm("view_project", via_project, project)
    denied, readable = (User.objects.create_user(name) for name in ("denied", "workspace-member"))
    assign_perm("all_projects_view", denied, project.workspace)
    assign_perm("deny_view_project", denied, project)
    assign_perm("view_workspace", readable, project.workspace)
    superuser.is_superuser = True
    superuser.save()
    inactive.is_active = False
    inactive.save()
    assign_perm("view_project", inactive, project)
    people = [owner, contributor, viewer, stranger, via_group, via_project, superuser, inactive, denied, readable]
    people += [AnonymousUser(), None]

    def agree():
        for user in people:
            expected = {a for a in permissions.ACTIONS if permissions.can(user, a, project)}
            assert permissions.project_actions(user, project.pk) == expected, user

    agree()
    assert permissions.project_actions(via_group, project.pk) == {"view", "write"}
    assert permissions.project_actions(via_project, project.pk) == {"view"}
    assert permissions.project_actions(denied, project.pk) == set()
    assert permissions.project_actions(readable, project.pk) == set()  # the project is private
    project.visibility = "workspace"
    project.save()
    agree()
    assert permissions.project_actions(readable, project.pk) == {"view"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_the_same_batches_apply_each_once():
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"] or "memory"):
        pytest.skip("needs a file or server database shared between threads")
    from projects import services as project_services
    from runs import services as run_services
    from runs.ingest import apply_batch

    owner = User.objects.create_user("racer")
    workspace = project_services.create_workspace(owner, "race")
    project = project_services.create_project(owner, workspace, "p", key="RACE")
    run, _ = run_services.create_run(owner, project)
    errors, applied = [], []

    def send():
        try:
            for seq in range(8):
                steps = list(range(seq * 5, seq * 5 + 5))
                ops = [{"op": "append", "path": "loss", "values": [float(s) for s in steps], "steps": steps}]
                if apply_batch(run, stream="s", seq=seq, raw_ops=ops)["applied"]:
                    applied.append(seq)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == list(range(8))
    assert list(FloatPoint.objects.order_by("step").values_list("step", flat=True)) == list(range(40))
    loss = Attribute.objects.get(run=run, path="loss")
    assert (loss.count, loss.first_step, loss.last_step, loss.min_value, loss.max_value) == (40, 0, 39, 0.0, 39.0)
    assert RunBatch.objects.filter(run=run).count() == 8
