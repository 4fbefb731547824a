"""Hostile and careless input: every case answers with a 4xx naming the parameter, never a 500,
never a half-applied batch, and never lets a caller past a permission boundary."""

import json
import sqlite3

import pytest
from django.db import connection
from django.test import Client

from runs.models import Attribute, RunBatch, SavedView

from .conftest import batch, run_url
from .roles import role_matrix

HUGE = "1" + "0" * 25  # 10**25: beyond every 64-bit column


@pytest.fixture
def web_for(db):
    def make(user):
        client = Client(raise_request_exception=False)
        client.force_login(user)
        return client

    return make


def assert_error_names(response, status, field):
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["status"] == status and error["field"] == field, error
    # a batch error says "operation N" in its message; any other names the field
    named = f"operation {error['op_index']}" if "op_index" in error else field.split(".")[0].split("[")[0]
    assert named in error["message"], error
    return error


# --- batches: flattened dicts, field cap, busy database ---------------------------------------


def test_flattened_dict_leaves_count_against_the_batch_limit(owner_api, run, settings):
    settings.RUNSTORE_MAX_BATCH_OPS = 50
    wide = {f"k{i}": i for i in range(51)}
    response = batch(owner_api, run, [{"op": "assign", "path": "params", "value": wide}])
    error = assert_error_names(response, 413, "ops[0].value")
    assert error["code"] == "batch_too_large"
    assert not Attribute.objects.filter(run=run, path__startswith="params/").exists()
    assert not RunBatch.objects.filter(run=run).exists()


def test_other_ops_and_dict_leaves_share_the_batch_limit(owner_api, run, settings):
    settings.RUNSTORE_MAX_BATCH_OPS = 50
    ops = [{"op": "assign", "path": f"x/{i}", "value": i} for i in range(10)]
    ops.append({"op": "assign", "path": "params", "value": {f"k{i}": i for i in range(41)}})
    assert batch(owner_api, run, ops).status_code == 413
    ops[-1]["value"] = {f"k{i}": i for i in range(40)}
    assert batch(owner_api, run, ops).status_code == 200
    assert Attribute.objects.filter(run=run, path__startswith="params/").count() == 40


def test_fields_per_run_are_capped_with_a_409(owner_api, run, settings):
    settings.RUNSTORE_MAX_FIELDS_PER_RUN = 20
    stored = Attribute.objects.filter(run=run).count()  # sys/tags
    ok = batch(
        owner_api, run, [{"op": "assign", "path": "p", "value": {f"a{i}": i for i in range(20 - stored)}}], seq=1
    )
    assert ok.status_code == 200, ok.content
    response = batch(owner_api, run, [{"op": "assign", "path": "q", "value": 1}], seq=2)
    error = assert_error_names(response, 409, "ops")
    assert error["code"] == "too_many_fields" and error["max_fields"] == 20
    # writing to fields the run already has is still fine
    assert batch(owner_api, run, [{"op": "assign", "path": "p/a0", "value": 7}], seq=3).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_locked_database_is_a_retryable_503_not_a_500(owner, run, api, settings):
    client = api(owner)
    if connection.vendor != "sqlite":
        # PostgreSQL: a row lock held by another transaction, and a lock_timeout, give 55P03.
        from django.db import connections

        other = connections.create_connection("default")
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM runs_run WHERE id = %s FOR UPDATE", [run.pk])
            with connection.cursor() as mine:
                mine.execute("ALTER ROLE CURRENT_USER SET lock_timeout = '200ms'")
            try:
                connection.close()  # the next request connects with the new lock_timeout
                response = batch(client, run, [{"op": "assign", "path": "a", "value": 1}])
            finally:
                other.rollback()
                other.close()
                with connection.cursor() as mine:
                    mine.execute("ALTER ROLE CURRENT_USER RESET lock_timeout")
                connection.close()
    else:
        settings.DATABASES["default"]["OPTIONS"]["timeout"] = 0.2
        connection.close()
        holder = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=5)
        holder.execute("BEGIN IMMEDIATE")
        try:
            response = batch(client, run, [{"op": "assign", "path": "a", "value": 1}])
        finally:
            holder.rollback()
            holder.close()
            settings.DATABASES["default"]["OPTIONS"]["timeout"] = 30
            connection.close()
    assert response.status_code == 503, response.content
    assert response["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "busy"
    # the client's retry then succeeds, once
    retried = batch(client, run, [{"op": "assign", "path": "a", "value": 1}])
    assert retried.status_code == 200 and retried.json()["applied"]


# --- malformed bodies ---------------------------------------------------------------------------


def test_oversized_batch_body_is_a_json_413(owner_api, run, settings):
    settings.RUNSTORE_MAX_BATCH_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps({"stream": "s", "seq": 1, "ops": [{"op": "assign", "path": "a", "value": "x" * 5000}]})
    response = owner_api.post(run_url(run, "batch"), body, content_type="application/json")
    error = assert_error_names(response, 413, "body")
    assert error["code"] == "body_too_large"


def test_json_integer_of_more_than_4300_digits_is_a_400(owner_api, run):
    body = '{"stream": "s", "seq": ' + "9" * 5000 + ', "ops": []}'
    response = owner_api.post(run_url(run, "batch"), body, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert "digits" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"stream": "s\\ud800", "seq": 1, "ops": []}', "stream"),
        ('{"stream": "s", "seq": 1, "ops": [{"op": "assign", "path": "a\\udc00b", "value": 1}]}', "ops[0].path"),
        (
            '{"stream": "s", "seq": 1, "ops": [{"op": "assign", "path": "p", "value": {"k\\ud83d": 1}}]}',
            "ops[0].value.<key>",
        ),
    ],
)
def test_lone_surrogate_in_a_path_or_stream_is_a_400_naming_it(owner_api, run, body, field):
    response = owner_api.post(run_url(run, "batch"), body, content_type="application/json")
    assert_error_names(response, 400, field)
    assert not RunBatch.objects.filter(run=run).exists()


def test_surrogate_pairs_are_ordinary_text(owner_api, run):
    body = '{"stream": "s", "seq": 1, "ops": [{"op": "assign", "path": "emoji", "value": "\\ud83d\\ude00"}]}'
    assert owner_api.post(run_url(run, "batch"), body, content_type="application/json").status_code == 200
    assert Attribute.objects.get(run=run, path="emoji").string_value == "\U0001f600"


@pytest.mark.parametrize(
    "suffix",
    ["batch", "ping", "uploads", "uploads/direct", "uploads/direct/00000000-0000-0000-0000-000000000000/complete"],
)
def test_options_on_run_endpoints_is_not_a_server_error(owner_api, run, suffix):
    response = owner_api.options(run_url(run, suffix))
    assert response.status_code == 200, response.content[:300]
    assert response.json()["name"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workspaces/acme/models/0/aliases/0",  # a view whose PUT object is not found by a "pk"
        "/api/v1/workspaces/acme/models/",
        "/api/v1/workspaces/acme/models/0/versions/1/stage",
    ],
)
def test_options_on_registry_endpoints_is_not_a_server_error(owner_api, project, path):
    response = owner_api.options(path)
    assert response.status_code in (200, 404), response.content[:300]


def test_options_on_exports_is_not_a_server_error(owner_api, project):
    response = owner_api.options("/api/v1/exports/")
    assert response.status_code == 200 and "parses" in response.json()


# --- UI integer parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/w/acme/vision/?page=" + HUGE, "page"),
        ("/w/acme/vision/?page=abc", "page"),
        ("/w/acme/vision/runs/VIS-1/?chart_page=" + HUGE, "chart_page"),
        ("/w/acme/vision/compare?runs=VIS-1&chart_page=x", "chart_page"),
        ("/w/acme/vision/?fragment=group&group=sys/owner&gk=%5B%22owner%22%5D&goff=" + HUGE, "goff"),
        ("/w/acme/vision/compare?runs=VIS-" + HUGE, "runs"),
        ("/w/acme/vision/?live=VIS-" + HUGE, "live"),
        ("/w/acme/vision/chart-data?runs=VIS-1&path=a&from_step=" + HUGE, "from_step"),
    ],
)
def test_bad_integers_in_ui_parameters_are_a_400_naming_them(web_for, owner, run, url, param):
    response = web_for(owner).get(url)
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert param in response.content.decode()


def test_empty_live_parameter_is_fine(web_for, owner, run):
    assert web_for(owner).get("/w/acme/vision/?live=").status_code == 200


def test_deleting_a_saved_view_by_a_malformed_id_is_a_400(web_for, owner, project):
    response = web_for(owner).post("/w/acme/vision/views", {"delete": "abc"})
    assert response.status_code == 400 and "delete" in response.content.decode()


# --- permissions -------------------------------------------------------------------------------------


UI_WRITE = {"owner": 302, "contributor": 302, "viewer": 403, "stranger": 404, "anonymous": 302}


def test_only_writers_may_share_a_saved_view(world):
    role_matrix(
        world,
        lambda client: client.post("/w/acme/vision/views", {"name": "team", "shared": "1", "c": ["sys/id"]}),
        UI_WRITE,
        ui=True,
        check={"viewer": lambda _: not SavedView.objects.exists()},
    )
    assert sorted(SavedView.objects.values_list("owner__username", "shared")) == [
        ("contributor", True),
        ("owner", True),
    ]


def test_every_member_may_keep_a_private_saved_view(world):
    role_matrix(
        world,
        lambda client: client.post("/w/acme/vision/views", {"name": "mine", "c": ["sys/id"]}),
        {**UI_WRITE, "viewer": 302},
        ui=True,
    )
    assert sorted(SavedView.objects.values_list("owner__username", "shared")) == [
        ("contributor", False),
        ("owner", False),
        ("viewer", False),
    ]


def test_invisible_workspace_project_list_is_a_404(world):
    role_matrix(
        world,
        lambda client: client.get("/api/v1/workspaces/nope/projects/"),
        {"owner": 404, "contributor": 404, "viewer": 404, "stranger": 404, "anonymous": 401},
    )
    responses = role_matrix(
        world,
        lambda client: client.get("/api/v1/workspaces/acme/projects/"),
        {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401},
    )
    assert [p["slug"] for p in responses["owner"].json()] == ["vision"]
