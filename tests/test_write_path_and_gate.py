"""One write path and one gate: services own every domain write and check the caller themselves,
the permission module decides every access, and no route ships without a declared rule."""

import itertools

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.views import View

from projects.models import Membership, Project, Workspace
from runs import services
from runs.models import Attribute, Export, Run, SavedView
from tracker.api.views import ScopedQuerysetMixin
from tracker.ui import ScopedUIViewMixin

from .conftest import batch, run_url
from .roles import ROLES, role_matrix, service_matrix

# Routes anyone may reach, or that the framework guards itself (the admin checks is_staff).
PUBLIC_ROUTES = {
    "healthz",
    "readyz",
    "metrics",  # Prometheus: its own gate, a bearer token or an address allow-list (tests/test_observability.py)
    "schema",
    "api-docs",
    "accounts:login",
    "accounts:logout",
    # Django's own password views: the change views require a login, the reset views are for anyone
    "accounts:password_change",
    "accounts:password_change_done",
    "accounts:password_reset",
    "accounts:password_reset_done",
    "accounts:password_reset_confirm",
    "accounts:password_reset_complete",
}
PUBLIC_NAMESPACES = {"admin"}


def _routes(resolver=None, namespace=""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _routes(entry, inner)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name or entry.pattern}", entry.callback


def _declares_rule(callback) -> bool:
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is None:
        return False
    for base in (ScopedQuerysetMixin, ScopedUIViewMixin):
        if issubclass(cls, base) and cls.scoped_queryset is not base.scoped_queryset:
            return True
    return False


def test_every_route_declares_a_permission_rule_or_is_listed_public():
    unscoped = [
        name
        for name, callback in _routes()
        if name not in PUBLIC_ROUTES and name.split(":", 1)[0] not in PUBLIC_NAMESPACES and not _declares_rule(callback)
    ]
    assert unscoped == []


def test_a_ui_view_that_declares_no_scope_fails_at_dispatch(owner):
    class Unscoped(ScopedUIViewMixin, View):
        def get(self, request):
            return None

    request = RequestFactory().get("/")
    request.user = owner
    with pytest.raises(Exception, match="must define scoped_queryset"):
        Unscoped.as_view()(request)


WRITE = {"owner": 200, "contributor": 200, "viewer": 403, "stranger": 404, "anonymous": 401}
# what services raise: they check the caller themselves, whatever view called them
# invisible is not found, visible but not allowed is forbidden: for services called directly too
WRITE_SERVICE = {
    "owner": None,
    "contributor": None,
    "viewer": PermissionDenied,
    "stranger": Http404,
    "anonymous": Http404,
}
VIEW_SERVICE = {**WRITE_SERVICE, "viewer": None}


def test_stranger_posting_a_malformed_form_to_an_invisible_project_gets_404(world, project):
    malformed = {"owner": 400, "contributor": 400, "viewer": 400, "stranger": 404, "anonymous": 302}
    role_matrix(world, lambda client: client.post("/w/acme/vision/", {"action": "nonsense"}), malformed, ui=True)
    role_matrix(world, lambda client: client.post("/w/acme/vision/views", {"delete": "abc"}), malformed, ui=True)


def test_stranger_posting_a_malformed_batch_gets_404_not_400(world, run):
    role_matrix(
        world,
        lambda client: client.post(run_url(run, "batch"), {"stream": ""}, format="json"),
        {**WRITE, "owner": 400, "contributor": 400},
    )


def test_viewer_posting_a_batch_gets_403_and_contributor_200(world, run):
    seqs = itertools.count()
    role_matrix(
        world, lambda client: batch(client, run, [{"op": "assign", "path": "a", "value": 1}], seq=next(seqs)), WRITE
    )


def test_batch_service_checks_the_caller_itself(world, run):
    ops = [{"op": "assign", "path": "a", "value": 1}]
    seqs = itertools.count()
    service_matrix(
        world,
        lambda user: services.apply_batch(user, run, stream="s", seq=next(seqs), raw_ops=ops),
        WRITE_SERVICE,
    )
    assert Attribute.objects.filter(run=run, path="a").exists()


def test_bulk_tagging_service_refuses_a_viewer(world, project, run):
    service_matrix(
        world, lambda user: services.tag_runs(user, project, [run], add=[user.username or "anon"]), WRITE_SERVICE
    )
    assert Attribute.objects.get(run=run, path="sys/tags").json_value == ["base", "contributor", "owner"]


def test_export_service_refuses_a_stranger(world, project):
    service_matrix(world, lambda user: services.request_export(user, project), VIEW_SERVICE)
    assert sorted(Export.objects.values_list("requested_by__username", flat=True)) == ["contributor", "owner", "viewer"]


def test_export_of_a_run_number_beyond_64_bits_is_a_400_naming_run(owner_api, project):
    response = owner_api.post("/api/v1/exports/", {"project": "acme/vision", "run": "VIS-" + "9" * 30}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "run"


def test_export_names_a_run_of_another_project_as_not_found(owner, owner_api, workspace, run):
    from projects import services as project_services

    project_services.create_project(owner, workspace, "audio", key="VIS2")
    response = owner_api.post(
        "/api/v1/exports/", {"project": "acme/audio", "run": f"acme/vision/{run.human_id}"}, format="json"
    )
    assert response.status_code == 404


def test_saved_view_rules_others_shared_view_is_readable_not_deletable(world, contributor, viewer, project):
    def save(user, name, shared):
        return services.save_view(user, project, name=name, shared=shared, columns=[], query="", sort="", group_by="")

    save(contributor, "team", True)
    save(viewer, "mine", False)
    readable = {role: set(SavedView.objects.for_user(world[role]).values_list("name", flat=True)) for role in ROLES}
    members = {"owner": {"team"}, "contributor": {"team"}, "viewer": {"team", "mine"}}
    assert readable == {**members, "stranger": set(), "anonymous": set()}
    # only its owner deletes a view; another's private view is not even there for them
    service_matrix(
        world,
        lambda user: services.delete_view(user, save(contributor, "team", True)),
        {**WRITE_SERVICE, "owner": PermissionDenied},
    )
    service_matrix(
        world,
        lambda user: services.delete_view(user, save(viewer, "mine", False)),
        {"owner": Http404, "contributor": Http404, "viewer": None, "stranger": Http404, "anonymous": Http404},
    )
    # sharing needs the right to write there
    service_matrix(world, lambda user: save(user, "share", True), WRITE_SERVICE)
    service_matrix(world, lambda user: save(user, "private", False), VIEW_SERVICE)
    services.delete_view(contributor, save(contributor, "team", True))
    assert not SavedView.objects.filter(name="team").exists()


@pytest.fixture
def root_client(db):
    root = User.objects.create_superuser("root", "root@example.org", "pw")
    client = Client()
    client.force_login(root)
    return client, root


def test_admin_delete_of_a_run_moves_it_to_the_trash(root_client, run):
    client, _ = root_client
    response = client.post(f"/admin/runs/run/{run.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Run.objects.get(pk=run.pk).deleted_at is not None


def test_admin_purge_now_removes_a_run_in_the_trash(root_client, run):
    client, _ = root_client
    client.post("/admin/runs/run/", {"action": "move_to_trash", "_selected_action": [run.pk]})
    response = client.post("/admin/runs/run/", {"action": "purge_now", "_selected_action": [run.pk]})
    assert response.status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists()


def test_admin_state_change_sets_finished_at(root_client, run):
    client, _ = root_client
    response = client.post(
        f"/admin/runs/run/{run.pk}/change/",
        {
            "name": run.name,
            "description": "",
            "state": "finished",
            "attributes-TOTAL_FORMS": "0",
            "attributes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    run.refresh_from_db()
    assert run.state == "finished" and run.finished_at is not None


def test_admin_created_workspace_and_project_get_their_owner_and_key(root_client):
    client, root = root_client
    response = client.post(
        "/admin/projects/workspace/add/",
        {"slug": "lab", "name": "Lab", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )
    assert response.status_code == 302, response.content[:2000]
    workspace = Workspace.objects.get(slug="lab")
    assert Membership.objects.filter(workspace=workspace, user=root, role="owner").exists()
    response = client.post(
        "/admin/projects/project/add/",
        {
            "workspace": workspace.pk,
            "slug": "speech",
            "key": "",
            "description": "",
            "visibility": "private",
            "run_counter": "0",
            "usage-TOTAL_FORMS": "0",
            "usage-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert Project.objects.get(workspace=workspace, slug="speech").key == "SPE"


def test_sys_fields_have_one_type_in_the_field_list_and_the_attributes(owner_api, run):
    listed = {
        f["path"]: f["type"] for f in owner_api.get("/api/v1/runs/fields", {"project": "acme/vision"}).json()["fields"]
    }
    read = {f["path"]: f["type"] for f in owner_api.get(run_url(run, "attributes")).json()["fields"]}
    shared = [p for p in read if p.startswith("sys/") and p in listed]
    assert "sys/id" in shared
    assert {p: listed[p] for p in shared} == {p: read[p] for p in shared}
