"""What each member of the permission world may see and do, through the API and the UI."""

import pytest
from django.test import Client

from projects import services as project_services
from projects.models import Project

from .conftest import batch, client_for, run_url

ROLES = ["owner", "contributor", "viewer", "stranger", "anonymous"]


@pytest.fixture
def world(owner, contributor, viewer, stranger, run):
    return {"owner": owner, "contributor": contributor, "viewer": viewer, "stranger": stranger, "anonymous": None, "run": run}


def test_stranger_sees_nothing_through_the_api(world, api):
    run = world["run"]
    client = api(world["stranger"])
    workspaces = client.get("/api/v1/workspaces/").json()
    assert [w["slug"] for w in workspaces] == ["stranger"]
    assert client.get("/api/v1/workspaces/acme/").status_code == 404
    assert client.get("/api/v1/workspaces/acme/projects/").status_code == 404
    assert client.get("/api/v1/workspaces/acme/projects/vision/").status_code == 404
    assert client.get("/api/v1/runs/").json()["count"] == 0
    assert client.get("/api/v1/runs/", {"project": "acme/vision"}).status_code == 404
    for suffix in ("", "attributes", "series?path=train/loss", "series/points?path=x", "files?path=f", "files/download?path=f"):
        response = client.get(run_url(run, suffix))
        assert response.status_code == 404, suffix
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/runs/{run.uuid}/").status_code == 404
    assert batch(client, run, [{"op": "assign", "path": "x", "value": 1}]).status_code == 404
    assert client.patch(run_url(run), {"name": "mine"}, format="json").status_code == 404
    assert client.delete(run_url(run)).status_code == 404
    # creating a run in someone else's project neither works nor reveals it exists
    response = client.post("/api/v1/runs/", {"project": "acme/vision"}, format="json")
    assert response.status_code == 404
    response = client.post("/api/v1/runs/", {"project": "acme/new-one"}, format="json")
    assert response.status_code == 404
    assert not Project.objects.filter(slug="new-one").exists()


def test_anonymous_gets_401_from_the_api(world, api):
    client = api(None)
    for url in ("/api/v1/workspaces/", "/api/v1/runs/", run_url(world["run"])):
        response = client.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "role, can_read, can_write",
    [("owner", True, True), ("contributor", True, True), ("viewer", True, False), ("stranger", False, False)],
)
def test_each_role_reads_and_writes_as_allowed(world, api, role, can_read, can_write):
    run = world["run"]
    client = api(world[role])
    assert (client.get(run_url(run)).status_code == 200) is can_read
    response = batch(client, run, [{"op": "assign", "path": "x", "value": 1}])
    assert response.status_code == (200 if can_write else 403 if can_read else 404)
    response = client.post("/api/v1/runs/", {"project": "acme/vision"}, format="json")
    assert response.status_code == (201 if can_write else 403 if can_read else 404)
    listed = client.get("/api/v1/runs/", {"project": "acme/vision"})
    assert listed.status_code == (200 if can_read else 404)


def test_viewer_cannot_create_projects_and_contributor_can(world, api):
    assert api(world["viewer"]).post("/api/v1/workspaces/acme/projects/", {"slug": "nope"}, format="json").status_code == 403
    response = api(world["contributor"]).post("/api/v1/workspaces/acme/projects/", {"slug": "nlp"}, format="json")
    assert response.status_code == 201 and response.json()["key"] == "NLP"


def test_project_level_grant_shows_only_that_project(world, api, stranger, workspace, owner):
    other = project_services.create_project(owner, workspace, "secret", key="SEC")
    from guardian.shortcuts import assign_perm

    shared = world["run"].project
    assign_perm("projects.view_project", stranger, shared)
    client = api(stranger)
    assert client.get(run_url(world["run"])).status_code == 200
    assert client.get("/api/v1/runs/", {"project": "acme/secret"}).status_code == 404
    assert client.get("/api/v1/workspaces/acme/projects/").json()[0]["slug"] == "vision"
    assert len(client.get("/api/v1/workspaces/acme/projects/").json()) == 1
    assert other.pk


def test_removed_member_loses_access(world, api, workspace, contributor):
    client = api(contributor)
    assert client.get(run_url(world["run"])).status_code == 200
    project_services.remove_membership(workspace, contributor)
    assert client.get(run_url(world["run"])).status_code == 404


def _browser(user):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize("role, status", [("owner", 200), ("viewer", 200), ("stranger", 404)])
def test_ui_pages_follow_the_same_rules(world, role, status):
    client = _browser(world[role])
    assert client.get("/w/acme/vision/").status_code == status
    assert client.get(f"/w/acme/vision/runs/{world['run'].human_id}/").status_code == status
    assert client.get("/w/acme/").status_code == status
    home = client.get("/")
    assert home.status_code == 200
    assert (b"acme/vision" in home.content) is (status == 200)


def test_anonymous_is_sent_to_login_by_the_ui(world):
    response = _browser(None).get("/w/acme/vision/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_deleted_run_disappears(world, api):
    client = api(world["owner"])
    assert client.delete(run_url(world["run"])).status_code == 204
    assert client.get(run_url(world["run"])).status_code == 404
    assert client.get("/api/v1/runs/", {"project": "acme/vision"}).json()["count"] == 0
    assert client_for(world["viewer"]).get(run_url(world["run"])).status_code == 404
