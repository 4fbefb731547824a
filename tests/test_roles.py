"""Roles as a team uses them: workspace roles, custom roles that allow or deny, teams, service
accounts, scoped and workspace-bound tokens, and the last-owner rule, through the public API."""

import importlib

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from rest_framework.test import APIClient

from projects import permissions
from projects import services as project_services
from projects.models import Membership, ProjectGrant, ProjectRole, WorkspaceRole
from runs import services as run_services
from runs.models import Run

from .conftest import batch, client_for, make_user, run_url


def token_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def new_run(owner, project, name="r"):
    return run_services.create_run(owner, project, name=name)[0]


def log(client, run, seq=1):
    return batch(client, run, [{"op": "assign", "path": "x", "value": seq}], seq=seq)


@pytest.fixture
def other_project(workspace, owner):
    return project_services.create_project(owner, workspace, "speech", key="SPE")


def test_a_workspace_member_sees_only_projects_shared_with_them_an_admin_sees_all(
    workspace, project, other_project, owner
):
    member, admin = make_user("member"), make_user("admin")
    project_services.set_membership(workspace, member, WorkspaceRole.MEMBER, by=owner)
    project_services.set_membership(workspace, admin, WorkspaceRole.ADMIN, by=owner)
    listed = {
        user.username: sorted(p["slug"] for p in client_for(user).get("/api/v1/workspaces/acme/projects/").json())
        for user in (member, admin)
    }
    assert listed == {"member": [], "admin": ["speech", "vision"]}
    run = new_run(owner, other_project)
    assert log(client_for(admin), run).status_code == 200
    assert client_for(member).get(run_url(run)).status_code == 404
    project_services.update_project(other_project, by=owner, visibility="workspace")
    assert client_for(member).get(run_url(run)).status_code == 200
    assert log(client_for(member), run).status_code == 403  # readable is not writable


def test_a_member_creates_projects_and_owns_them_but_manages_no_one(workspace, owner, stranger):
    member = make_user("member")
    project_services.set_membership(workspace, member, WorkspaceRole.MEMBER, by=owner)
    response = client_for(member).post("/api/v1/workspaces/acme/projects/", {"slug": "mine"}, format="json")
    assert response.status_code == 201, response.content
    mine = workspace.projects.get(slug="mine")
    assert permissions.project_actions(member, mine.pk) == set(permissions.PROJECT_ACTIONS)
    with pytest.raises(PermissionDenied):
        project_services.set_membership(workspace, stranger, WorkspaceRole.MEMBER, by=member)
    project_services.set_project_role(mine, stranger, ProjectRole.VIEWER, by=member)  # owner of the project
    assert permissions.project_actions(stranger, mine.pk) == {"view", "export"}


def test_only_an_owner_makes_owners_and_the_last_owner_stays(workspace, owner, contributor):
    admin = make_user("admin")
    project_services.set_membership(workspace, admin, WorkspaceRole.ADMIN, by=owner)
    with pytest.raises(PermissionDenied):
        project_services.set_membership(workspace, contributor, WorkspaceRole.OWNER, by=admin)
    with pytest.raises(ValidationError) as demoted:
        project_services.set_membership(workspace, owner, WorkspaceRole.MEMBER, by=owner)
    assert "last owner" in str(demoted.value)
    with pytest.raises(ValidationError):
        project_services.remove_membership(workspace, owner, by=owner)
    assert Membership.objects.get(workspace=workspace, user=owner).role == "owner"
    project_services.set_membership(workspace, admin, WorkspaceRole.OWNER, by=owner)
    project_services.remove_membership(workspace, owner, by=admin)  # no longer the last
    assert not permissions.can(owner, "view", workspace)


def test_a_custom_role_logs_runs_but_cannot_delete_them(workspace, project, run, owner):
    logger = make_user("logger")
    role = project_services.save_custom_role(workspace, "log, no delete", ["view", "write"], by=owner)
    project_services.grant_custom_role(project, logger, role, by=owner)
    client = client_for(logger)
    assert log(client, run).status_code == 200
    assert client.post("/api/v1/runs/", {"project": "acme/vision"}, format="json").status_code == 201
    assert client.delete(run_url(run)).status_code == 403
    assert Run.objects.get(pk=run.pk).deleted_at is None
    # the role changes, its grants follow
    project_services.save_custom_role(workspace, "log, no delete", ["view"], by=owner, role=role)
    assert log(client, run, seq=2).status_code == 403


def test_a_read_and_export_role_exports_but_does_not_write(workspace, project, run, owner):
    reader = make_user("reader")
    role = project_services.save_custom_role(workspace, "read+export", ["view", "export"], by=owner)
    project_services.grant_custom_role(project, reader, role, by=owner)
    client = client_for(reader)
    assert client.get(run_url(run)).status_code == 200
    assert log(client, run).status_code == 403
    only_read = make_user("only-read")
    project_services.grant_custom_role(
        project, only_read, project_services.save_custom_role(workspace, "read", ["view"], by=owner), by=owner
    )
    exports = [
        c.post("/api/v1/exports/", {"project": "acme/vision"}, format="json").status_code
        for c in (client, client_for(only_read))
    ]
    assert exports[0] in (201, 202) and exports[1] == 403


def test_a_deny_on_the_project_wins_over_the_workspace_role(workspace, project, other_project, run, owner):
    admin = make_user("admin")
    project_services.set_membership(workspace, admin, WorkspaceRole.ADMIN, by=owner)
    no_delete = project_services.save_custom_role(workspace, "no delete", ["delete"], by=owner)
    project_services.grant_custom_role(project, admin, no_delete, deny=True, by=owner)
    client = client_for(admin)
    assert log(client, run).status_code == 200
    assert client.delete(run_url(run)).status_code == 403
    elsewhere = new_run(owner, other_project)
    assert client.delete(run_url(elsewhere)).status_code == 204
    blind = project_services.save_custom_role(workspace, "no view", ["view"], by=owner)
    project_services.grant_custom_role(project, admin, blind, deny=True, by=owner)  # replaces the deny above
    assert client.get(run_url(run)).status_code == 404
    project_services.remove_project_grant(project, admin, deny=True, by=owner)
    assert client.get(run_url(run)).status_code == 200


def test_a_team_member_holds_the_team_role_until_removed_from_the_team(workspace, project, run, owner):
    alice, bob = make_user("alice"), make_user("bob")
    team = project_services.create_team(workspace, "vision-team", by=owner, members=[alice, bob])
    project_services.set_project_role(project, team, ProjectRole.CONTRIBUTOR, by=owner)
    assert log(client_for(alice), run).status_code == 200
    project_services.set_team_members(team, [bob], by=owner)
    assert client_for(alice).get(run_url(run)).status_code == 404
    assert log(client_for(bob), run, seq=2).status_code == 200
    project_services.remove_project_grant(project, team, by=owner)
    assert client_for(bob).get(run_url(run)).status_code == 404


def test_a_service_account_logs_with_its_bound_token_and_cannot_sign_in(workspace, project, run, owner, client):
    account = project_services.create_service_account(workspace, "ci-bot", by=owner)
    project_services.set_project_role(project, account.user, ProjectRole.CONTRIBUTOR, by=owner)
    token, raw = project_services.issue_token(account.user, name="ci", scope="write", by=owner)
    assert token.workspace_binding.workspace == workspace
    bot = token_client(raw)
    assert log(bot, run).status_code == 200
    assert bot.get("/api/v1/workspaces/").json()[0]["slug"] == "acme"
    assert not account.user.has_usable_password()
    refused = client.post("/accounts/login/", {"username": "ci-bot", "password": ""})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    page = client.get("/w/acme/vision/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]
    # nobody else may mint tokens for it: an outsider does not even learn of the workspace, a member may not
    with pytest.raises(Http404):
        project_services.issue_token(account.user, name="x", by=make_user("outsider"))
    member = make_user("member")
    project_services.set_membership(workspace, member, WorkspaceRole.MEMBER, by=owner)
    with pytest.raises(PermissionDenied):
        project_services.issue_token(account.user, name="x", by=member)


def test_a_token_bound_to_another_workspace_reaches_nothing_in_this_one(workspace, project, run, owner):
    personal = owner.personal_workspace
    _, raw = project_services.issue_token(owner, name="home", scope="admin", workspace=personal)
    bound = token_client(raw)
    assert bound.get(run_url(run)).status_code == 404
    assert {w["slug"] for w in bound.get("/api/v1/workspaces/").json()} == {personal.slug}
    response = bound.post(f"/api/v1/workspaces/{personal.slug}/projects/", {"slug": "home"}, format="json")
    assert response.status_code == 201


def test_a_read_token_reads_and_writes_nothing(project, run, owner):
    _, raw = project_services.issue_token(owner, name="ro", scope="read")
    reader = token_client(raw)
    assert reader.get(run_url(run)).status_code == 200
    assert log(reader, run).status_code == 403
    assert reader.delete(run_url(run)).status_code == 403
    assert reader.post("/api/v1/workspaces/acme/projects/", {"slug": "nope"}, format="json").status_code == 403


def test_old_workspace_roles_become_member_plus_the_same_role_on_every_project(workspace, project, other_project):
    """The upgrade keeps every old contributor's and viewer's access, project by project."""
    from django.apps import apps

    old_contributor, old_viewer = make_user("old-contributor"), make_user("old-viewer")
    Membership.objects.create(workspace=workspace, user=old_contributor, role="contributor")
    Membership.objects.create(workspace=workspace, user=old_viewer, role="viewer")
    migration = importlib.import_module("projects.migrations.0004_memberships_to_roles")
    migration.forwards(apps, None)
    for p in (project, other_project):
        assert permissions.project_actions(old_contributor, p.pk) == {"view", "export", "write", "delete"}
        assert permissions.project_actions(old_viewer, p.pk) == {"view", "export"}
    roles = Membership.objects.filter(workspace=workspace, user__in=[old_contributor, old_viewer])
    assert set(roles.values_list("role", flat=True)) == {"member"}
    assert ProjectGrant.objects.filter(user=old_viewer, role="viewer").count() == 2
    assert User.objects.get(pk=old_viewer.pk).is_active
