import threading

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import ApiToken, hash_token
from projects import services as project_services
from projects.models import Project
from runs import services
from runs.models import Run

from .conftest import client_for, run_url


def test_create_run_creates_the_project_when_allowed(owner_api, workspace):
    response = owner_api.post("/api/v1/runs/", {"project": "acme/speech", "name": "r", "tags": ["t1"]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == "SPE-1" and body["project"] == "acme/speech" and body["owner"] == "owner"
    assert body["state"] == "running" and body["tags"] == ["t1"]
    assert Project.objects.get(slug="speech").key == "SPE"
    second = owner_api.post("/api/v1/runs/", {"project": "acme/speech"}, format="json").json()
    assert second["id"] == "SPE-2"


def test_personal_workspace_exists_for_every_user(owner, api):
    response = api(owner).post("/api/v1/runs/", {"project": "owner/scratch"}, format="json")
    assert response.status_code == 201


def test_custom_run_id_returns_the_same_run(owner_api, project):
    first = owner_api.post("/api/v1/runs/", {"project": "acme/vision", "custom_run_id": "job-7"}, format="json")
    again = owner_api.post("/api/v1/runs/", {"project": "acme/vision", "custom_run_id": "job-7"}, format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["uuid"] == again.json()["uuid"]


def test_import_keeps_the_original_creation_time_of_a_new_run_only(owner_api, project):
    body = {
        "project": "acme/vision",
        "custom_run_id": "import:mlflow:abc",
        "creation_time": "2021-03-04T05:06:07.250+02:00",
    }
    created = owner_api.post("/api/v1/runs/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["creation_time"] == "2021-03-04T03:06:07.250000Z"
    run = Run.objects.get(uuid=created.json()["uuid"])
    fields = {f["path"]: f["value"] for f in owner_api.get(f"{run_url(run)}attributes").json()["fields"]}
    assert fields["sys/creation_time"].startswith("2021-03-04T03:06:07.25")
    # The same custom_run_id again: the existing run, whose creation time is not changed.
    again = owner_api.post("/api/v1/runs/", {**body, "creation_time": "2022-01-01T00:00:00Z"}, format="json")
    assert again.status_code == 200 and again.json()["creation_time"] == "2021-03-04T03:06:07.250000Z"
    plain = owner_api.post("/api/v1/runs/", {"project": "acme/vision"}, format="json").json()
    assert plain["creation_time"] > "2025"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("2999-01-01T00:00:00Z", "future"), ("yesterday", "format"), ("2021-13-01T00:00:00Z", "format")],
)
def test_creation_time_in_the_future_or_not_iso_8601_is_refused(owner_api, project, value, reason):
    response = owner_api.post("/api/v1/runs/", {"project": "acme/vision", "creation_time": value}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "creation_time"
    assert reason != "future" or "future" in error["message"]
    assert not Run.objects.filter(project=project).exists()


def test_list_pages_newest_first(owner_api, project, owner, django_assert_max_num_queries):
    for index in range(5):
        services.create_run(owner, project, name=f"r{index}", tags=[f"t{index}"])
    # 8, plus the token's workspace binding and its request-rate bucket, plus on PostgreSQL inside the
    # test's transaction the query budget's savepoint, SET LOCAL, reset, release
    with django_assert_max_num_queries(14):
        page = owner_api.get("/api/v1/runs/", {"project": "acme/vision", "limit": 2}).json()
    assert page["count"] == 5 and [r["name"] for r in page["results"]] == ["r4", "r3"]
    assert page["results"][0]["tags"] == ["t4"]
    rest = owner_api.get(page["next"]).json()
    assert [r["name"] for r in rest["results"]] == ["r2", "r1"]


def test_update_state_name_tags(owner_api, run):
    response = owner_api.patch(run_url(run), {"state": "finished", "name": "n", "tags": ["x", "y"]}, format="json")
    assert response.status_code == 200
    body = owner_api.get(run_url(run)).json()
    assert body["state"] == "finished" and body["name"] == "n" and body["tags"] == ["x", "y"]
    assert body["finish_time"] is not None
    bad = owner_api.patch(run_url(run), {"state": "exploded"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "state"


def test_run_addressed_by_uuid(owner_api, run):
    assert owner_api.get(f"/api/v1/runs/{run.uuid}/").json()["id"] == "VIS-1"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"project": "no-slash"}, "project"),
        ({"project": "a/b/c"}, "project"),
        ({"project": "acme/bad name"}, "project"),
        ({"project": "acme/vision", "tags": "x"}, "tags"),
        ({"project": "acme/vision", "name": "x" * 300}, "name"),
        ({}, "project"),
    ],
)
def test_bad_run_creation_names_the_field(owner_api, project, body, field):
    response = owner_api.post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_get_distinct_numbers(settings, tmp_path):
    if (
        connection.vendor == "sqlite"
        and connection.settings_dict["NAME"] in ("", ":memory:")
        or "memory" in str(connection.settings_dict["NAME"])
    ):
        pytest.skip("needs a file or server database shared between threads")
    from django.contrib.auth.models import User

    owner = User.objects.create_user("racer")
    workspace = project_services.create_workspace(owner, "race")
    project = project_services.create_project(owner, workspace, "p", key="RACE")
    errors = []

    def create(n):
        try:
            for _ in range(n):
                services.create_run(owner, project)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(10,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(Run.objects.filter(project=project).values_list("number", flat=True))
    assert numbers == list(range(1, 41))


def test_createtoken_prints_a_token_stored_hashed(owner, capsys):
    call_command("createtoken", "owner")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(user=owner)
    assert raw.startswith("rs_") and raw not in (token.digest, token.lookup)
    assert token.digest == hash_token(raw)
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/workspaces/").status_code == 200


@pytest.mark.parametrize("header", ["Bearer rs_nope_nope", "Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"])
def test_bad_tokens_get_401(db, header):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/workspaces/")
    assert response.status_code == 401 and response.json()["error"]["message"]


def test_revoked_token_stops_working(owner):
    from django.utils import timezone

    token, raw = ApiToken.issue(owner)
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/workspaces/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert client.get("/api/v1/workspaces/").status_code == 401


def test_workspace_and_project_endpoints(owner_api, project):
    created = owner_api.post("/api/v1/workspaces/", {"slug": "lab"}, format="json")
    assert created.status_code == 201
    assert owner_api.post("/api/v1/workspaces/", {"slug": "lab"}, format="json").status_code == 400
    assert owner_api.post("/api/v1/workspaces/", {"slug": "bad slug"}, format="json").json()["error"]["field"] == "slug"
    slugs = [w["slug"] for w in owner_api.get("/api/v1/workspaces/").json()]
    assert slugs == ["acme", "lab", "owner"]
    project_body = owner_api.get("/api/v1/workspaces/acme/projects/vision/").json()
    assert project_body["key"] == "VIS" and project_body["name"] == "acme/vision"
    response = owner_api.post("/api/v1/workspaces/lab/projects/", {"slug": "x", "key": "bad key"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "key"
