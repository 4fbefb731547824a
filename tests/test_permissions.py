"""What each member of the permission world may see and do, through the API and the UI."""

import hashlib
import itertools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects import services as project_services
from projects.models import Project
from runs import services as run_services

from .conftest import batch, run_url
from .roles import ROLES, role_matrix

READ = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401}
WRITE = {"owner": 200, "contributor": 200, "viewer": 403, "stranger": 404, "anonymous": 401}
CREATE = {**WRITE, "owner": 201, "contributor": 201}


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/workspaces/acme/",
        "/api/v1/workspaces/acme/projects/",
        "/api/v1/workspaces/acme/projects/vision/",
        "/api/v1/runs/?project=acme/vision",
        "/api/v1/runs/acme/vision/VIS-1/",
        "/api/v1/runs/acme/vision/VIS-1/attributes",
    ],
)
def test_members_read_strangers_get_404_anonymous_401(world, url):
    responses = role_matrix(world, lambda client: client.get(url), READ)
    assert responses["stranger"].json()["error"]["code"] == "not_found"
    assert responses["anonymous"].json()["error"]["code"] == "not_authenticated"


def test_run_by_uuid_follows_the_same_rules(world):
    role_matrix(world, lambda client: client.get(f"/api/v1/runs/{world['run'].uuid}/"), READ)


def test_writers_write_viewers_get_403(world):
    seqs = itertools.count(1)
    role_matrix(
        world,
        lambda client: batch(client, world["run"], [{"op": "assign", "path": "x", "value": 1}], seq=next(seqs)),
        WRITE,
    )
    role_matrix(world, lambda client: client.patch(run_url(world["run"]), {"name": "renamed"}, format="json"), WRITE)
    role_matrix(world, lambda client: client.post("/api/v1/runs/", {"project": "acme/vision"}, format="json"), CREATE)


def test_contributors_and_owner_create_projects(world):
    slugs = (f"p{i}" for i in itertools.count())
    role_matrix(
        world,
        lambda client: client.post("/api/v1/workspaces/acme/projects/", {"slug": next(slugs)}, format="json"),
        CREATE,
    )


def test_writers_delete_runs_into_the_trash(world, owner, project):
    runs = iter([run_services.create_run(owner, project, name=f"doomed-{i}")[0] for i in range(5)])
    role_matrix(world, lambda client: client.delete(run_url(next(runs))), {**WRITE, "owner": 204, "contributor": 204})


def test_lists_show_strangers_nothing_of_the_workspace(world):
    responses = role_matrix(world, lambda client: client.get("/api/v1/workspaces/"), {**READ, "stranger": 200})
    assert {w["slug"] for w in responses["stranger"].json()} == {"stranger"}
    assert {"acme"} <= {w["slug"] for w in responses["viewer"].json()}
    responses = role_matrix(world, lambda client: client.get("/api/v1/runs/"), {**READ, "stranger": 200})
    assert responses["stranger"].json()["count"] == 0 and responses["contributor"].json()["count"] == 1


@pytest.fixture
def run_with_data(world, owner, settings, tmp_path):
    """``world``'s run holding the series ``train/loss`` and ``x`` and the file ``f``."""
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    content = b"weights"
    uploaded = SimpleUploadedFile("f.bin", content)
    uploaded.sha256 = hashlib.sha256(content).hexdigest()
    blob = run_services.store_upload(owner, world["run"], uploaded)
    ops = [
        {"op": "append", "path": "train/loss", "values": [0.5, 0.25]},
        {"op": "append", "path": "x", "values": [1.0]},
        {"op": "upload", "path": "f", "sha256": blob.sha256, "name": "f.bin"},
    ]
    run_services.apply_batch(owner, world["run"], stream="s", seq=0, raw_ops=ops)
    return world["run"]


@pytest.mark.parametrize(
    "suffix", ["series?path=train/loss", "series/points?path=x", "files?path=f", "files/download?path=f"]
)
def test_members_read_what_a_run_holds_stranger_gets_not_found(world, run_with_data, suffix):
    responses = role_matrix(world, lambda client: client.get(run_url(run_with_data, suffix)), READ)
    assert responses["stranger"].json()["error"]["code"] == "not_found"


def test_a_run_in_a_new_project_creates_it_for_writers_only(world):
    slugs = iter(f"new-{role}" for role in ROLES)
    expected = {**CREATE, "viewer": 404}  # a project that does not exist: nothing to reveal, nothing made
    role_matrix(
        world, lambda client: client.post("/api/v1/runs/", {"project": f"acme/{next(slugs)}"}, format="json"), expected
    )
    made = set(Project.objects.filter(slug__startswith="new-").values_list("slug", flat=True))
    assert made == {"new-contributor", "new-owner"}


def test_project_level_grant_shows_only_that_project(world, stranger, workspace, owner):
    secret = project_services.create_project(owner, workspace, "secret", key="SEC")
    from guardian.shortcuts import assign_perm

    assign_perm("projects.view_project", stranger, world["run"].project)
    role_matrix(world, lambda client: client.get(run_url(world["run"])), {**READ, "stranger": 200})
    # the other project is private to its members (its owner); neither grant reaches it
    private = {**READ, "contributor": 404, "viewer": 404}
    role_matrix(world, lambda client: client.get("/api/v1/runs/", {"project": "acme/secret"}), private)
    listing = {**READ, "stranger": 200}
    responses = role_matrix(world, lambda client: client.get("/api/v1/workspaces/acme/projects/"), listing)
    listed = {role: sorted(p["slug"] for p in responses[role].json()) for role in ROLES[1:]}
    assert listed == {
        "owner": ["secret", "vision"],
        "contributor": ["vision"],
        "viewer": ["vision"],
        "stranger": ["vision"],
    }
    # made readable by the whole workspace: its members (contributor) see it, others still do not
    project_services.update_project(secret, by=owner, visibility="workspace")
    role_matrix(
        world, lambda client: client.get("/api/v1/runs/", {"project": "acme/secret"}), {**private, "contributor": 200}
    )


def test_removed_member_loses_access(world, workspace, contributor):
    role_matrix(world, lambda client: client.get(run_url(world["run"])), READ)
    project_services.remove_membership(workspace, contributor)
    role_matrix(world, lambda client: client.get(run_url(world["run"])), {**READ, "contributor": 404})


UI_PAGE = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 302}


@pytest.mark.parametrize("url", ["/w/acme/vision/", "/w/acme/vision/runs/VIS-1/", "/w/acme/"])
def test_ui_pages_follow_the_same_rules(world, url):
    responses = role_matrix(world, lambda client: client.get(url), UI_PAGE, ui=True)
    assert "/accounts/login/" in responses["anonymous"]["Location"]


def test_home_lists_the_workspace_to_members_only(world):
    responses = role_matrix(world, lambda client: client.get("/"), {**UI_PAGE, "stranger": 200}, ui=True)
    for role in ("owner", "contributor", "viewer", "stranger"):
        assert (b"acme/vision" in responses[role].content) is (role != "stranger"), role


def test_deleted_run_disappears(world, api):
    assert api(world["owner"]).delete(run_url(world["run"])).status_code == 204
    gone = {**READ, "owner": 404, "contributor": 404, "viewer": 404}
    role_matrix(world, lambda client: client.get(run_url(world["run"])), gone)
    assert api(world["owner"]).get("/api/v1/runs/", {"project": "acme/vision"}).json()["count"] == 0
