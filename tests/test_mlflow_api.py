"""The MLflow-compatible REST API, request by request: shapes, error codes, limits, idempotency,
search translation and who may do what (the permission world of tests/conftest.py)."""

import math
import threading

import pytest
from django.db import connection

from runs.models import Attribute, FloatPoint, Run

from .conftest import run_url

API = "/api/2.0/mlflow/"


def call(client, method, endpoint, body=None):
    if method == "GET":
        return client.get(API + endpoint, body or {})
    return client.post(API + endpoint, body or {}, format="json")


def run_id(run):
    return run.uuid.hex


def log_batch(client, run, **body):
    return call(client, "POST", "runs/log-batch", {"run_id": run_id(run), **body})


def get_run(client, run):
    response = call(client, "GET", "runs/get", {"run_id": run_id(run)})
    assert response.status_code == 200, response.json()
    return response.json()["run"]


def metric_values(run_json):
    return {m["key"]: m["value"] for m in run_json["data"]["metrics"]}


@pytest.fixture
def owner_api(owner, api):
    return api(owner)


# --- experiments ----------------------------------------------------------------------------


def test_experiment_created_by_name_lives_in_the_personal_workspace_and_is_found_by_name(owner_api, owner):
    response = call(owner_api, "POST", "experiments/create", {"name": "My Exp 1", "tags": [{"key": "t", "value": "v"}]})
    assert response.status_code == 200, response.json()
    experiment_id = response.json()["experiment_id"]
    got = call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "My Exp 1"}).json()["experiment"]
    assert got["experiment_id"] == experiment_id
    assert got["lifecycle_stage"] == "active"
    assert got["artifact_location"] == f"mlflow-artifacts:/{experiment_id}"
    assert {"key": "t", "value": "v"} in got["tags"]
    assert owner.personal_workspace.projects.filter(pk=int(experiment_id)).exists()


def test_workspace_slash_project_name_is_that_project(owner_api, project):
    got = call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "acme/vision"})
    assert got.status_code == 200, got.json()
    assert got.json()["experiment"]["experiment_id"] == str(project.pk)
    assert got.json()["experiment"]["name"] == "acme/vision"


def test_duplicate_experiment_name_is_resource_already_exists(owner_api):
    call(owner_api, "POST", "experiments/create", {"name": "twice"})
    response = call(owner_api, "POST", "experiments/create", {"name": "twice"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


def test_missing_experiment_is_resource_does_not_exist_404(owner_api):
    response = call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "nope"})
    assert (response.status_code, response.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    response = call(owner_api, "GET", "experiments/get", {"experiment_id": "999999"})
    assert (response.status_code, response.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_default_experiment_zero_is_made_on_first_use(owner_api):
    got = call(owner_api, "GET", "experiments/get", {"experiment_id": "0"}).json()["experiment"]
    assert got["name"] == "Default"
    again = call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "Default"}).json()["experiment"]
    assert again["experiment_id"] == got["experiment_id"]


def test_rename_delete_restore_and_search_by_view_type(owner_api):
    experiment_id = call(owner_api, "POST", "experiments/create", {"name": "old"}).json()["experiment_id"]
    assert (
        call(owner_api, "POST", "experiments/update", {"experiment_id": experiment_id, "new_name": "new"}).status_code
        == 200
    )
    assert call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "new"}).status_code == 200
    assert call(owner_api, "GET", "experiments/get-by-name", {"experiment_name": "old"}).status_code == 404
    call(owner_api, "POST", "experiments/delete", {"experiment_id": experiment_id})
    active = call(owner_api, "POST", "experiments/search", {}).json()["experiments"]
    deleted = call(owner_api, "POST", "experiments/search", {"view_type": "DELETED_ONLY"}).json()["experiments"]
    assert experiment_id not in [e["experiment_id"] for e in active]
    assert [e["experiment_id"] for e in deleted] == [experiment_id]
    refused = call(owner_api, "POST", "runs/create", {"experiment_id": experiment_id})
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    call(owner_api, "POST", "experiments/restore", {"experiment_id": experiment_id})
    assert (
        call(owner_api, "GET", "experiments/get", {"experiment_id": experiment_id}).json()["experiment"][
            "lifecycle_stage"
        ]
        == "active"
    )


def test_experiment_search_filters_orders_and_pages(owner_api):
    for name in ("b-exp", "a-exp", "c-other"):
        call(owner_api, "POST", "experiments/create", {"name": name})
    body = {"filter": "name LIKE '%-exp'", "order_by": ["name ASC"], "max_results": 1}
    first = call(owner_api, "POST", "experiments/search", body).json()
    assert [e["name"] for e in first["experiments"]] == ["a-exp"]
    second = call(owner_api, "POST", "experiments/search", {**body, "page_token": first["next_page_token"]}).json()
    assert [e["name"] for e in second["experiments"]] == ["b-exp"]
    assert "next_page_token" not in second


# --- runs, params, tags ---------------------------------------------------------------------


def test_create_run_with_name_tags_and_read_it_back(owner_api, project):
    body = {"experiment_id": str(project.pk), "run_name": "r1", "start_time": 1, "tags": [{"key": "k", "value": "v"}]}
    response = call(owner_api, "POST", "runs/create", body)
    assert response.status_code == 200, response.json()
    info = response.json()["run"]["info"]
    assert len(info["run_id"]) == 32 and info["run_name"] == "r1" and info["status"] == "RUNNING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{project.pk}/{info['run_id']}/artifacts"
    tags = {t["key"]: t["value"] for t in response.json()["run"]["data"]["tags"]}
    assert tags == {"k": "v", "mlflow.runName": "r1"}
    assert Run.objects.get(uuid=info["run_id"]).name == "r1"


def test_create_answers_the_run_as_stored(owner_api, project):
    tags = [
        {"key": "team", "value": "vision"},
        {"key": "a.b", "value": ""},
        {"key": "mlflow.note.content", "value": "n"},
    ]
    body = {"experiment_id": str(project.pk), "run_name": "r2", "start_time": 1700000000123, "tags": tags}
    created = call(owner_api, "POST", "runs/create", body).json()["run"]
    stored = call(owner_api, "GET", "runs/get", {"run_id": created["info"]["run_id"]}).json()["run"]

    def by_key(items):
        return sorted(items, key=lambda item: item["key"])

    assert created["info"] == stored["info"] and created["info"]["start_time"] == 1700000000123
    assert by_key(created["data"].pop("tags")) == by_key(stored["data"].pop("tags"))
    assert created["data"] == stored["data"] == {"metrics": [], "params": []}
    assert created["inputs"] == stored["inputs"] == {"dataset_inputs": []}


@pytest.mark.django_db(transaction=True)
def test_concurrent_run_creation_gets_distinct_numbers_and_keeps_each_runs_fields(owner, api):
    """Run creation holds its project's run counter only while it writes the run: creations from
    several threads each get their own number, in turn, and each keeps the tags and time it sent."""
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"] or "memory"):
        pytest.skip("needs a file or server database shared between threads")
    from projects import services as project_services

    workspace = project_services.create_workspace(owner, "race", "Race")
    project = project_services.create_project(owner, workspace, "p", key="RACE")
    errors, made = [], []

    def create(thread):
        client = api(owner)
        try:
            for i in range(5):
                body = {
                    "experiment_id": str(project.pk),
                    "run_name": f"t{thread}-{i}",
                    "start_time": 1700000000000 + 10 * thread + i,
                    "tags": [{"key": "thread", "value": str(thread)}],
                }
                response = call(client, "POST", "runs/create", body)
                assert response.status_code == 200, response.json()
                made.append((response.json()["run"]["info"]["run_id"], body))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Run.objects.filter(project=project).values_list("number", flat=True)) == list(range(1, 21))
    client = api(owner)
    for run_id_, body in made:
        got = call(client, "GET", "runs/get", {"run_id": run_id_}).json()["run"]
        tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
        assert tags == {"thread": body["tags"][0]["value"], "mlflow.runName": body["run_name"]}
        assert got["info"]["start_time"] == body["start_time"]


def test_params_are_kept_as_sent_and_immutable(owner_api, run):
    params = [{"key": "padded", "value": "0042"}, {"key": "lr", "value": "1e-05"}]
    assert log_batch(owner_api, run, params=params).status_code == 200
    again = call(owner_api, "POST", "runs/log-parameter", {"run_id": run_id(run), "key": "padded", "value": "0042"})
    assert again.status_code == 200
    changed = call(owner_api, "POST", "runs/log-parameter", {"run_id": run_id(run), "key": "padded", "value": "42"})
    assert (changed.status_code, changed.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    stored = {p["key"]: p["value"] for p in get_run(owner_api, run)["data"]["params"]}
    assert stored == {"padded": "0042", "lr": "1e-05"}
    assert Attribute.objects.get(run=run, path="parameters/padded").string_value == "0042"


def test_run_name_tag_is_the_run_name_and_tags_can_be_deleted(owner_api, run):
    call(owner_api, "POST", "runs/set-tag", {"run_id": run_id(run), "key": "mlflow.runName", "value": "renamed"})
    call(owner_api, "POST", "runs/set-tag", {"run_id": run_id(run), "key": "gone", "value": "soon"})
    run.refresh_from_db()
    assert run.name == "renamed"
    assert call(owner_api, "POST", "runs/delete-tag", {"run_id": run_id(run), "key": "gone"}).status_code == 200
    missing = call(owner_api, "POST", "runs/delete-tag", {"run_id": run_id(run), "key": "gone"})
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_update_run_status_and_lifecycle(owner_api, run):
    answer = call(owner_api, "POST", "runs/update", {"run_id": run_id(run), "status": "KILLED", "end_time": 5})
    assert answer.json()["run_info"]["status"] == "KILLED" and answer.json()["run_info"]["end_time"]
    call(owner_api, "POST", "runs/delete", {"run_id": run_id(run)})
    assert get_run(owner_api, run)["info"]["lifecycle_stage"] == "deleted"
    refused = call(owner_api, "POST", "runs/set-tag", {"run_id": run_id(run), "key": "a", "value": "b"})
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    call(owner_api, "POST", "runs/restore", {"run_id": run_id(run)})
    assert get_run(owner_api, run)["info"]["lifecycle_stage"] == "active"


def test_start_and_end_times_sent_by_the_client_round_trip(owner_api, project):
    body = {"experiment_id": str(project.pk), "run_name": "timed", "start_time": 1700000000123}
    info = call(owner_api, "POST", "runs/create", body).json()["run"]["info"]
    assert info["start_time"] == 1700000000123 and "end_time" not in info
    update = {"run_id": info["run_id"], "status": "FINISHED", "end_time": 1700000009877}
    updated = call(owner_api, "POST", "runs/update", update).json()["run_info"]
    assert (updated["start_time"], updated["end_time"]) == (1700000000123, 1700000009877)
    got = call(owner_api, "GET", "runs/get", {"run_id": info["run_id"]}).json()["run"]["info"]
    assert (got["start_time"], got["end_time"], got["status"]) == (1700000000123, 1700000009877, "FINISHED")
    found = call(owner_api, "POST", "runs/search", {"experiment_ids": [str(project.pk)]}).json()["runs"]
    assert [(r["info"]["start_time"], r["info"]["end_time"]) for r in found] == [(1700000000123, 1700000009877)]


def test_a_bad_end_time_names_the_parameter(owner_api, run):
    response = call(owner_api, "POST", "runs/update", {"run_id": run_id(run), "status": "FINISHED", "end_time": "late"})
    assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "'end_time'" in response.json()["message"]
    assert get_run(owner_api, run)["info"]["status"] == "RUNNING"  # nothing applied


# --- metrics --------------------------------------------------------------------------------


def test_latest_metric_is_highest_step_then_latest_timestamp_then_highest_value(owner_api, run):
    metrics = [
        {"key": "m", "value": 0.1, "timestamp": 10, "step": 5},
        {"key": "m", "value": 0.9, "timestamp": 99, "step": 4},
        {"key": "m", "value": 0.3, "timestamp": 20, "step": 5},
        {"key": "m", "value": 0.2, "timestamp": 20, "step": 5},
    ]
    assert log_batch(owner_api, run, metrics=metrics).status_code == 200
    assert metric_values(get_run(owner_api, run))["m"] == 0.3
    series = Attribute.objects.get(run=run, path="metrics/m")
    assert (series.float_value, series.last_step) == (0.3, 5)  # the query engine compares the same value


def test_a_retried_metric_write_does_not_duplicate_points(owner_api, run):
    body = {"run_id": run_id(run), "key": "loss", "value": 0.5, "timestamp": 1000, "step": 1}
    for _ in range(3):
        assert call(owner_api, "POST", "runs/log-metric", body).status_code == 200
    history = call(owner_api, "GET", "metrics/get-history", {"run_id": run_id(run), "metric_key": "loss"}).json()
    assert history["metrics"] == [{"key": "loss", "value": 0.5, "timestamp": 1000, "step": 1}]
    series = Attribute.objects.get(run=run, path="metrics/loss")
    assert FloatPoint.objects.filter(series_id=series.pk).count() == 1 and series.count == 1


def test_nan_and_infinities_are_kept(owner_api, run):
    metrics = [
        {"key": "x", "value": "NaN", "timestamp": 1, "step": 0},
        {"key": "x", "value": "Infinity", "timestamp": 1, "step": 1},
        {"key": "x", "value": "-Infinity", "timestamp": 1, "step": 2},
    ]
    assert log_batch(owner_api, run, metrics=metrics).status_code == 200
    history = call(owner_api, "GET", "metrics/get-history", {"run_id": run_id(run), "metric_key": "x"}).json()
    assert [m["value"] for m in history["metrics"]] == ["NaN", "Infinity", "-Infinity"]
    assert metric_values(get_run(owner_api, run))["x"] == "-Infinity"


def test_metric_history_pages(owner_api, run):
    metrics = [{"key": "h", "value": float(i), "timestamp": i, "step": i} for i in range(5)]
    log_batch(owner_api, run, metrics=metrics)
    seen, token = [], None
    while True:
        query = {"run_id": run_id(run), "metric_key": "h", "max_results": 2}
        if token:
            query["page_token"] = token
        page = call(owner_api, "GET", "metrics/get-history", query).json()
        seen.append([m["step"] for m in page["metrics"]])
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == [[0, 1], [2, 3], [4]]


def test_metric_history_next_page_starts_after_the_last_point_read(owner_api, run):
    # Ties on step and timestamp (and a NaN beside a 0.0) page in a stable order; a point logged between
    # two page requests ahead of the page read so far neither repeats a point nor skips one.
    metrics = [{"key": "h", "value": v, "timestamp": 7, "step": 1} for v in (0.0, "NaN", 2.0, 1.0)]
    metrics += [{"key": "h", "value": float(i), "timestamp": i, "step": i} for i in range(2, 6)]
    assert log_batch(owner_api, run, metrics=metrics).status_code == 200
    seen, token = [], None
    while True:
        query = {"run_id": run_id(run), "metric_key": "h", "max_results": 3}
        if token:
            query["page_token"] = token
        page = call(owner_api, "GET", "metrics/get-history", query).json()
        seen += [(m["step"], m["value"]) for m in page["metrics"]]
        token = page.get("next_page_token")
        if len(seen) == 3:
            late = [{"key": "h", "value": 9.0, "timestamp": 0, "step": 0}]
            assert log_batch(owner_api, run, metrics=late).status_code == 200
        if not token:
            break
    assert seen == [(1, 0.0), (1, "NaN"), (1, 1.0), (1, 2.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]


def test_log_batch_limits_are_mlflows(owner_api, run):
    too_many_params = [{"key": f"p{i}", "value": "x"} for i in range(101)]
    too_many_metrics = [{"key": "m", "value": 1.0, "timestamp": i, "step": i} for i in range(1001)]
    for body in ({"params": too_many_params}, {"metrics": too_many_metrics}, {"tags": too_many_params}):
        response = log_batch(owner_api, run, **body)
        assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
        assert "at most" in response.json()["message"]
    assert not Attribute.objects.filter(run=run, path__startswith="parameters/").exists()


def test_log_batch_is_all_or_nothing(owner_api, run):
    log_batch(owner_api, run, params=[{"key": "fixed", "value": "1"}])
    response = log_batch(
        owner_api,
        run,
        metrics=[{"key": "lost", "value": 1.0, "timestamp": 1, "step": 0}],
        params=[{"key": "new", "value": "x"}, {"key": "fixed", "value": "2"}],
        tags=[{"key": "lost", "value": "y"}],
    )
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    data = get_run(owner_api, run)["data"]
    assert "lost" not in metric_values({"data": data}) and "new" not in {p["key"] for p in data["params"]}
    assert "lost" not in {t["key"] for t in data["tags"]}


def test_bad_metric_value_names_the_parameter(owner_api, run):
    response = log_batch(owner_api, run, metrics=[{"key": "m", "value": "high", "timestamp": 1, "step": 0}])
    assert response.status_code == 400 and "'value'" in response.json()["message"]


def test_int64_fields_are_read_as_protobuf_json_writes_them_or_as_numbers(owner_api, run):
    metrics = [
        {"key": "m", "value": 0.5, "timestamp": "1700000000000", "step": "3"},
        {"key": "m", "value": "NaN", "timestamp": 1700000000001, "step": 4},
        {"key": "m", "value": 2, "timestamp": "-5", "step": "-1"},
        {"key": "m", "value": 1.5, "timestamp": "1700000000002"},
    ]
    assert log_batch(owner_api, run, metrics=metrics).status_code == 200
    history = call(owner_api, "GET", "metrics/get-history", {"run_id": run_id(run), "metric_key": "m"}).json()
    points = [(p["step"], p["timestamp"], p["value"]) for p in history["metrics"]]
    assert points == [(-1, -5, 2.0), (0, 1700000000002, 1.5), (3, 1700000000000, 0.5), (4, 1700000000001, "NaN")]


@pytest.mark.parametrize(
    "field, sent",
    [("step", "3a"), ("step", "٣x"), ("timestamp", "9" * 20), ("timestamp", ""), ("step", True), ("timestamp", [1])],
)
def test_a_bad_int64_field_names_the_parameter(owner_api, run, field, sent):
    metric = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0, field: sent}
    response = log_batch(owner_api, run, metrics=[metric])
    assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert f"'{field}'" in response.json()["message"]
    assert not Attribute.objects.filter(run=run, path="metrics/m").exists()


def native_points(client, run, path):
    points = client.get(run_url(run, "series/points"), {"path": path}).json()
    return list(zip(points["steps"], points["values"], strict=True))


def test_a_batch_in_any_order_appends_each_steps_highest_point_to_the_series(owner_api, run):
    metrics = [
        {"key": "m", "value": v, "timestamp": t, "step": s}
        for s, t, v in [(3, 5, 0.3), (1, 9, 0.1), (3, 5, 0.7), (2, 1, 0.2), (1, 2, 0.9), (3, 4, 0.8)]
    ]
    assert log_batch(owner_api, run, metrics=metrics).status_code == 200
    # per step: the latest timestamp, then the highest value (MLflow's latest), in step order
    assert native_points(owner_api, run, "metrics/m") == [(1, 0.1), (2, 0.2), (3, 0.7)]
    assert metric_values(get_run(owner_api, run))["m"] == 0.7
    more = [{"key": "m", "value": 0.4, "timestamp": 1, "step": s} for s in (2, 5, 4)]
    assert log_batch(owner_api, run, metrics=more).status_code == 200  # the series holds step 2 already
    assert native_points(owner_api, run, "metrics/m") == [(1, 0.1), (2, 0.2), (3, 0.7), (4, 0.4), (5, 0.4)]


# --- search -----------------------------------------------------------------------------------


@pytest.fixture
def sweep(owner_api, project, owner, run):
    from runs import services

    runs = []
    for i in range(4):
        created, _ = services.create_run(owner, project, name=f"sweep-{i}")
        log_batch(
            owner_api,
            created,
            metrics=[{"key": "score", "value": i / 10, "timestamp": 1, "step": 0}],
            params=[{"key": "opt", "value": "adam" if i % 2 else "sgd"}],
            tags=[{"key": "group", "value": "a" if i < 2 else "b"}],
        )
        runs.append(created)
    return runs


def search(client, project, **body):
    response = call(client, "POST", "runs/search", {"experiment_ids": [str(project.pk)], **body})
    assert response.status_code == 200, response.json()
    return response.json()


def names(answer):
    return [r["info"]["run_name"] for r in answer.get("runs", [])]


@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("metrics.score > 0.15", ["sweep-2", "sweep-3"]),
        ("metrics.score >= 0.1 AND params.opt = 'adam'", ["sweep-1", "sweep-3"]),
        ("params.opt != 'adam'", ["sweep-0", "sweep-2"]),
        ("tags.group = 'b'", ["sweep-2", "sweep-3"]),
        ("attributes.run_name LIKE 'sweep-%'", ["sweep-0", "sweep-1", "sweep-2", "sweep-3"]),
        ("attributes.run_name ILIKE 'SWEEP-_'", ["sweep-0", "sweep-1", "sweep-2", "sweep-3"]),
        ("run_name = 'sweep-1'", ["sweep-1"]),
        ("tags.group IN ('a')", ["sweep-0", "sweep-1"]),
        ("params.opt LIKE 'ad%'", ["sweep-1", "sweep-3"]),
        ("tags.`group` = 'a' and metrics.score < 0.05", ["sweep-0"]),
        ("attributes.status = 'RUNNING' and tags.mlflow.runName = 'sweep-2'", ["sweep-2"]),
        ("tags.missing IS NULL and metrics.score = 0.3", ["sweep-3"]),
    ],
)
def test_search_filters_translate_to_the_query_engine(owner_api, project, sweep, filter_string, expected):
    assert sorted(names(search(owner_api, project, filter=filter_string))) == expected


def test_search_by_run_id_and_status_in(owner_api, project, sweep):
    ids = [run_id(sweep[0]), run_id(sweep[2])]
    answer = search(owner_api, project, filter=f"attributes.run_id IN ('{ids[0]}', '{ids[1]}')")
    assert sorted(names(answer)) == ["sweep-0", "sweep-2"]
    answer = search(owner_api, project, filter="attributes.status NOT IN ('FINISHED')")
    assert len(names(answer)) == 5  # the fixture's run "baseline" too


def test_search_orders_and_pages(owner_api, project, sweep):
    first = search(owner_api, project, order_by=["metrics.score DESC"], max_results=3)
    assert names(first) == ["sweep-3", "sweep-2", "sweep-1"]
    second = search(
        owner_api, project, order_by=["metrics.score DESC"], max_results=3, page_token=first["next_page_token"]
    )
    assert names(second) == ["sweep-0", "baseline"]  # runs without the metric sort last
    assert "next_page_token" not in second


def test_search_view_types_follow_the_trash(owner_api, project, sweep):
    call(owner_api, "POST", "runs/delete", {"run_id": run_id(sweep[1])})
    assert "sweep-1" not in names(search(owner_api, project))
    assert names(search(owner_api, project, run_view_type="DELETED_ONLY")) == ["sweep-1"]
    assert len(names(search(owner_api, project, run_view_type="ALL"))) == 5


def test_search_filters_and_orders_on_end_time(owner_api, project, sweep):
    for i, ended in enumerate(sweep[:3]):
        update = {"run_id": run_id(ended), "status": "FINISHED", "end_time": 1000 * (i + 1)}
        assert call(owner_api, "POST", "runs/update", update).status_code == 200
    assert sorted(names(search(owner_api, project, filter="attributes.end_time > 1500"))) == ["sweep-1", "sweep-2"]
    assert names(search(owner_api, project, filter="attributes.end_time <= 1000")) == ["sweep-0"]
    ordered = names(search(owner_api, project, order_by=["attributes.end_time DESC"]))
    assert ordered[:3] == ["sweep-2", "sweep-1", "sweep-0"]  # runs still running (no end time) come last


@pytest.mark.parametrize(
    "bad", ["metrics.score >> 1", "metrics.score > 1 OR params.a = 'b'", "foo.bar = 'x'", "metrics.x LIKE 'a'"]
)
def test_bad_filter_is_invalid_parameter_value(owner_api, project, sweep, bad):
    response = call(owner_api, "POST", "runs/search", {"experiment_ids": [str(project.pk)], "filter": bad})
    assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


# --- inputs and artifacts -------------------------------------------------------------------------


def test_log_inputs_become_a_tracked_artifact_version(owner_api, run):
    dataset = {"name": "train", "digest": "abc123", "source_type": "s3", "source": "s3://b/train.csv", "schema": "{}"}
    body = {
        "run_id": run_id(run),
        "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}], "dataset": dataset}],
    }
    assert call(owner_api, "POST", "runs/log-inputs", body).status_code == 200
    inputs = get_run(owner_api, run)["inputs"]["dataset_inputs"]
    assert inputs[0]["dataset"]["digest"] == "abc123" and inputs[0]["tags"][0]["value"] == "training"
    assert Attribute.objects.get(run=run, path="inputs/train-abc123/hash").string_value == "abc123"


def test_artifact_upload_list_download_round_trip(owner_api, run, blob_store):
    base = f"/api/2.0/mlflow-artifacts/artifacts/{run.project_id}/{run_id(run)}/artifacts"
    content = bytes(range(256)) * 100
    response = owner_api.put(f"{base}/dir/sub/data.bin", content, content_type="application/octet-stream")
    assert response.status_code == 200, response.content
    owner_api.put(f"{base}/top.txt", b"top", content_type="application/octet-stream")
    listing = owner_api.get(
        "/api/2.0/mlflow-artifacts/artifacts", {"path": f"{run.project_id}/{run_id(run)}/artifacts"}
    )
    assert listing.json()["files"] == [
        {"path": "dir", "is_dir": True},
        {"path": "top.txt", "is_dir": False, "file_size": 3},
    ]
    downloaded = owner_api.get(f"{base}/dir/sub/data.bin")
    assert b"".join(downloaded.streaming_content) == content
    assert owner_api.get(f"{base}/nope.txt").json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


# --- who may do what -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, read, write",
    [
        ("owner", 200, 200),
        ("contributor", 200, 200),
        ("viewer", 200, 403),
        ("stranger", 404, 404),
    ],
)
def test_each_role_reads_and_logs_as_on_the_native_api(api, world, run, who, read, write):
    client = api(world[who])
    got = call(client, "GET", "runs/get", {"run_id": run_id(run)})
    assert got.status_code == read
    logged = call(client, "POST", "runs/log-metric", {"run_id": run_id(run), "key": "m", "value": 1, "timestamp": 1})
    assert logged.status_code == write
    if write == 403:
        assert logged.json()["error_code"] == "PERMISSION_DENIED"
    if read == 404:
        assert got.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert call(client, "GET", "experiments/get", {"experiment_id": str(run.project_id)}).status_code == 404
    uploaded = client.put(
        f"/api/2.0/mlflow-artifacts/artifacts/{run.project_id}/{run_id(run)}/artifacts/a.txt",
        b"a",
        content_type="text/plain",
    )
    assert uploaded.status_code == write


def test_anonymous_gets_unauthenticated_401(api, run):
    response = call(api(None), "GET", "runs/get", {"run_id": run_id(run)})
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHENTICATED")


def test_read_token_cannot_log(owner, run):
    from rest_framework.test import APIClient

    from accounts.models import ApiToken

    token, raw = ApiToken.issue(owner, name="read")
    ApiToken.objects.filter(pk=token.pk).update(scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert call(client, "GET", "runs/get", {"run_id": run_id(run)}).status_code == 200
    refused = call(client, "POST", "runs/set-tag", {"run_id": run_id(run), "key": "a", "value": "b"})
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")


def test_viewer_cannot_delete_or_rename_the_experiment(api, viewer, project):
    client = api(viewer)
    for endpoint, body in (
        ("experiments/delete", {"experiment_id": str(project.pk)}),
        ("experiments/update", {"experiment_id": str(project.pk), "new_name": "x"}),
        ("experiments/set-experiment-tag", {"experiment_id": str(project.pk), "key": "a", "value": "b"}),
    ):
        response = call(client, "POST", endpoint, body)
        assert (response.status_code, response.json()["error_code"]) == (403, "PERMISSION_DENIED")


def test_unknown_endpoint_is_endpoint_not_found(owner_api):
    response = call(owner_api, "POST", "traces/create", {"name": "x"})
    assert (response.status_code, response.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


def test_ajax_api_prefix_answers_too(owner_api, run):
    response = owner_api.get("/ajax-api/2.0/mlflow/runs/get", {"run_id": run_id(run)})
    assert response.status_code == 200
    assert not math.isnan(response.json()["run"]["info"]["start_time"])


# --- statements per request -------------------------------------------------------------------


def test_log_batch_of_a_new_run_costs_few_statements(owner_api, project, django_assert_max_num_queries):
    """The stock client's run creation is ``create_run`` + ``log_batch``; on PostgreSQL the batch's
    own writes (the run's row touched, its fields read, the metric points and their latest values
    written) go in one round trip. The rest: token, rate bucket, the run and its permission, the
    workspace's quota, the engine's field writes."""
    body = {"experiment_id": str(project.pk), "run_name": "r", "start_time": 1, "tags": [{"key": "k", "value": "v"}]}
    run_hex = call(owner_api, "POST", "runs/create", body).json()["run"]["info"]["run_id"]
    batch = {
        "run_id": run_hex,
        "metrics": [{"key": k, "value": 0.5, "timestamp": 1, "step": 0} for k in ("a", "b", "c", "d", "e")],
        "params": [{"key": k, "value": "1"} for k in ("p", "q", "r", "s", "t")],
    }
    budget = 14 if connection.vendor == "postgresql" else 18  # measured; 17 on PostgreSQL before
    with django_assert_max_num_queries(budget):
        response = call(owner_api, "POST", "runs/log-batch", batch)
    assert response.status_code == 200, response.json()
    got = call(owner_api, "GET", "runs/get", {"run_id": run_hex}).json()["run"]["data"]
    assert {m["key"]: m["value"] for m in got["metrics"]} == dict.fromkeys("abcde", 0.5)
    assert {p["key"]: p["value"] for p in got["params"]} == dict.fromkeys("pqrst", "1")


@pytest.mark.django_db(transaction=True)
def test_concurrent_log_batches_of_one_run_each_see_the_fields_the_others_wrote(owner, api, project):
    """Batches of one run take turns on the run's row; each reads the run's fields only once it has
    the row (on PostgreSQL in the same round trip as the lock, as a statement of its own): the same
    new params and metrics sent from several threads at once are all accepted, stored once."""
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"] or "memory"):
        pytest.skip("needs a file or server database shared between threads")
    client = api(owner)
    run_hex = call(client, "POST", "runs/create", {"experiment_id": str(project.pk)}).json()["run"]["info"]["run_id"]
    errors, barrier = [], threading.Barrier(4)

    def send(thread):
        client = api(owner)
        try:
            barrier.wait(timeout=30)
            for i in range(3):
                batch = {
                    "run_id": run_hex,
                    "metrics": [{"key": "loss", "value": thread + i / 10, "timestamp": 1, "step": 10 * thread + i}],
                    "params": [{"key": "lr", "value": "0.1"}],
                    "tags": [{"key": "who", "value": "them"}],
                }
                response = call(client, "POST", "runs/log-batch", batch)
                assert response.status_code == 200, response.json()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    got = call(client, "GET", "runs/get", {"run_id": run_hex}).json()["run"]["data"]
    assert got["params"] == [{"key": "lr", "value": "0.1"}]
    assert {m["key"]: m["value"] for m in got["metrics"]} == {"loss": 3.2}  # the highest step's
    history = call(client, "GET", "metrics/get-history", {"run_id": run_hex, "metric_key": "loss"}).json()
    assert sorted(m["step"] for m in history["metrics"]) == [10 * t + i for t in range(4) for i in range(3)]
    assert Attribute.objects.filter(run__uuid=run_hex, path__in=["parameters/lr", "tags/who"]).count() == 2
