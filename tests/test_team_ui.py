"""The team pages: API tokens, workspace members, teams, custom roles, service accounts, project
members, project creation and settings, usage against quota; and which write controls each role sees."""

import itertools
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import (
    CustomRole,
    Membership,
    Project,
    ProjectGrant,
    ServiceAccount,
    Team,
    TokenWorkspace,
    Workspace,
)

from .conftest import make_user
from .roles import browser, role_matrix

VIEW = {"anonymous": 302, "stranger": 404, "viewer": 200, "contributor": 200, "owner": 200}
# a change that needs ``manage`` on the workspace: the viewer sees acme through its project, the contributor is a member
MANAGE_WS = {"anonymous": 302, "stranger": 404, "viewer": 403, "contributor": 403, "owner": 302}
MANAGE_PROJECT = {"anonymous": 302, "stranger": 404, "viewer": 403, "contributor": 403, "owner": 302}

WS = "/w/acme/-/"
PROJECT = "/w/acme/vision/"


def acme() -> Workspace:
    return Workspace.objects.get(slug="acme")


def text(response) -> str:
    return response.content.decode()


# ---- API tokens --------------------------------------------------------------


def test_token_page_is_for_every_signed_in_user(world):
    responses = role_matrix(world, lambda c: c.get("/settings/tokens/"), {**VIEW, "stranger": 200}, ui=True)
    assert "no-store" in responses["stranger"]["Cache-Control"]
    assert "Create token" in text(responses["viewer"])


def test_token_secret_is_shown_once_and_never_cached(world, viewer):
    client = browser(viewer)
    response = client.post("/settings/tokens/", {"name": "laptop", "scope": "read", "expires": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=viewer, name="laptop")
    secret = response.context["secret"]
    assert secret in text(response) and ApiToken.find(secret) == token
    assert token.scope == "read"
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    # not kept anywhere the next page could show it again
    assert all(secret not in str(value) for value in client.session.values())
    again = client.get("/settings/tokens/")
    assert secret not in text(again) and token.prefix in text(again)
    assert "no-store" in again["Cache-Control"]


def test_token_can_expire_on_a_date_and_be_bound_to_a_workspace(world, contributor):
    day = timezone.localdate() + timedelta(days=10)
    response = browser(contributor).post(
        "/settings/tokens/",
        {"name": "ci", "scope": "write", "expires": "date", "expires_on": day.isoformat(), "workspace": "acme"},
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(user=contributor, name="ci")
    assert timezone.localtime(token.expires_at).date() == day + timedelta(days=1)
    assert TokenWorkspace.objects.get(token=token).workspace.slug == "acme"
    assert "acme" in text(browser(contributor).get("/settings/tokens/"))


def test_token_form_names_the_field_it_refuses(world, stranger):
    client = browser(stranger)
    past = client.post("/settings/tokens/", {"scope": "read", "expires": "date", "expires_on": "2001-01-01"})
    assert past.status_code == 400 and "today or a later date" in text(past)
    # a workspace the user may not view is not a choice
    foreign = client.post("/settings/tokens/", {"scope": "read", "expires": "never", "workspace": "acme"})
    assert foreign.status_code == 400 and foreign.context["form"].errors["workspace"]
    bad_scope = client.post("/settings/tokens/", {"scope": "root", "expires": "never"})
    assert bad_scope.status_code == 400 and bad_scope.context["form"].errors["scope"]
    assert not ApiToken.objects.filter(user=stranger).exists()


def test_a_user_revokes_their_own_token_and_no_one_elses(world, owner, viewer):
    token, _ = project_services.issue_token(viewer, name="old", scope="read")
    url = f"/settings/tokens/{token.pk}/revoke"
    assert browser(owner).get(url).status_code == 404
    assert browser(owner).post(url).status_code == 404
    assert browser(None).post(url).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is None
    client = browser(viewer)
    assert "Revoke" in text(client.get(url))
    assert client.post(url).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in text(client.get("/settings/tokens/"))


# ---- workspace pages ---------------------------------------------------------


@pytest.mark.parametrize("page", ["members", "teams", "roles", "service-accounts"])
def test_workspace_pages_are_for_its_members_not_for_a_guest_of_one_project(world, page):
    """The viewer reaches ``acme`` only through ``acme/vision``: they learn the workspace exists, not who is in it."""
    responses = role_matrix(world, lambda c: c.get(WS + page), {**VIEW, "viewer": 403}, ui=True)
    owner_form = '<form method="post" action="/w/acme/-/'
    assert owner_form in text(responses["owner"])
    assert owner_form not in text(responses["contributor"]), f"a member sees a write control on {page}"
    guest_view = text(browser(world["viewer"]).get("/w/acme/"))
    assert "contributor" not in guest_view and WS + "members" not in guest_view


def test_owner_invites_a_member_by_email(world, owner):
    newbie = User.objects.create_user("newbie", email="New.Bie@example.org", password="x")
    invite = {"member": "new.bie@example.org", "role": "member"}
    refused = lambda response: not Membership.objects.filter(user=newbie, workspace__slug="acme").exists()  # noqa: E731
    role_matrix(
        world,
        lambda c: c.post(WS + "members", invite),
        MANAGE_WS,
        ui=True,
        check={role: refused for role in ("anonymous", "stranger", "viewer", "contributor")},
    )
    assert Membership.objects.get(user=newbie, workspace__slug="acme").role == "member"
    assert "newbie" in text(browser(owner).get(WS + "members"))


def test_inviting_someone_without_an_account_says_so_and_creates_no_one(world, owner):
    users = User.objects.count()
    response = browser(owner).post(WS + "members", {"member": "ghost@example.org", "role": "member"})
    assert response.status_code == 400
    assert "no user has the username or email" in text(response)
    assert User.objects.count() == users


def test_owner_changes_a_members_role(world, owner, contributor):
    membership = Membership.objects.get(user=contributor, workspace__slug="acme")
    url = f"{WS}members/{membership.pk}"
    role_matrix(
        world,
        lambda c: c.post(url, {"role": "admin"}),
        MANAGE_WS,
        ui=True,
        check={"contributor": lambda r: Membership.objects.get(pk=membership.pk).role == "member"},
    )
    assert Membership.objects.get(pk=membership.pk).role == "admin"


def test_the_last_owner_can_be_neither_demoted_nor_removed(world, owner):
    client = browser(owner)
    membership = Membership.objects.get(user=owner, workspace__slug="acme")
    demote = client.post(f"{WS}members/{membership.pk}", {"role": "member"})
    assert demote.status_code == 400 and "last owner" in text(demote)
    remove = client.post(f"{WS}members/{membership.pk}/remove")
    assert remove.status_code == 400 and "last owner" in text(remove)
    assert Membership.objects.get(pk=membership.pk).role == "owner"


def test_owner_removes_a_member_and_a_member_may_leave(world, owner, contributor):
    second = make_user("second")
    project_services.set_membership(acme(), second, "member", by=owner)
    theirs = Membership.objects.get(user=second, workspace__slug="acme")
    assert browser(contributor).post(f"{WS}members/{theirs.pk}/remove").status_code == 403
    assert browser(owner).get(f"{WS}members/{theirs.pk}/remove").status_code == 200
    assert browser(owner).post(f"{WS}members/{theirs.pk}/remove").status_code == 302
    assert not Membership.objects.filter(pk=theirs.pk).exists()
    mine = Membership.objects.get(user=contributor, workspace__slug="acme")
    assert browser(contributor).post(f"{WS}members/{mine.pk}/remove").status_code == 302
    assert not Membership.objects.filter(pk=mine.pk).exists()


def test_teams_are_created_filled_and_deleted_by_workspace_managers(world, owner, viewer):
    role_matrix(
        world,
        lambda c: c.post(WS + "teams", {"name": "vision-team"}),
        MANAGE_WS,
        ui=True,
        check={"contributor": lambda r: not Team.objects.exists()},
    )
    team = Team.objects.get(name="vision-team")
    client = browser(owner)
    assert client.post(f"{WS}teams/vision-team", {"member": "viewer"}).status_code == 302
    assert list(team.members) == [viewer]
    assert browser(viewer).post(f"{WS}teams/vision-team", {"member": "stranger"}).status_code == 403
    assert client.post(f"{WS}teams/vision-team", {"remove": viewer.pk}).status_code == 302
    assert list(team.members) == []
    # a team becomes a workspace member from the members page
    assert client.post(WS + "members", {"team": "vision-team", "role": "member"}).status_code == 302
    assert Membership.objects.filter(team=team, role="member").exists()
    assert browser(viewer).post(f"{WS}teams/vision-team/delete").status_code == 403
    assert client.post(f"{WS}teams/vision-team/delete").status_code == 302
    assert not Team.objects.exists()


def test_custom_roles_are_created_edited_and_deleted_by_workspace_managers(world, owner):
    role_matrix(
        world,
        lambda c: c.post(WS + "roles", {"name": "Logger", "actions": ["view", "write"]}),
        MANAGE_WS,
        ui=True,
        check={"contributor": lambda r: not CustomRole.objects.exists()},
    )
    role = CustomRole.objects.get(name="Logger")
    assert role.actions == ["view", "write"]
    client = browser(owner)
    empty = client.post(WS + "roles", {"name": "Nothing"})
    assert empty.status_code == 400 and empty.context["form"].errors["actions"]
    assert client.get(f"{WS}roles/{role.pk}").status_code == 200
    assert browser(world["contributor"]).get(f"{WS}roles/{role.pk}").status_code == 403
    edit = client.post(f"{WS}roles/{role.pk}", {"name": "Reader", "actions": ["view", "export"]})
    assert edit.status_code == 302
    role.refresh_from_db()
    assert (role.name, role.actions) == ("Reader", ["view", "export"])
    assert client.post(f"{WS}roles/{role.pk}/delete").status_code == 302
    assert not CustomRole.objects.exists()


def test_service_accounts_and_their_tokens_are_managed_by_workspace_admins(world, owner, contributor):
    role_matrix(
        world,
        lambda c: c.post(WS + "service-accounts", {"username": "ci-acme", "role": "member"}),
        MANAGE_WS,
        ui=True,
        check={"contributor": lambda r: not ServiceAccount.objects.exists()},
    )
    account = ServiceAccount.objects.get(user__username="ci-acme")
    assert Membership.objects.get(user=account.user).role == "member"
    url = f"{WS}service-accounts/ci-acme"
    assert browser(contributor).post(url, {"scope": "write", "expires": "never"}).status_code == 403
    response = browser(owner).post(url, {"name": "pipeline", "scope": "write", "expires": "never"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=account.user)
    secret = response.context["secret"]
    assert secret in text(response) and ApiToken.find(secret) == token
    assert TokenWorkspace.objects.get(token=token).workspace.slug == "acme"
    assert secret not in text(browser(owner).get(url))
    revoke = f"{url}/tokens/{token.pk}/revoke"
    assert browser(contributor).post(revoke).status_code == 403
    assert browser(owner).post(revoke).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_members_page_query_count_does_not_grow_with_members(world, owner, django_assert_max_num_queries):
    workspace = acme()
    for i in range(12):
        project_services.set_membership(workspace, make_user(f"member{i}"), "member", by=owner)
        project_services.set_membership(workspace, project_services.create_team(workspace, f"team{i}"), "member")
    client = browser(owner)
    with django_assert_max_num_queries(10):
        assert client.get(WS + "members").status_code == 200


# ---- projects ----------------------------------------------------------------


def test_project_creation_needs_write_on_the_workspace(world, contributor):
    numbers = itertools.count()
    role_matrix(
        world,
        lambda c: c.post(WS + "new-project", {"slug": f"new{next(numbers)}", "visibility": "workspace"}),
        {"anonymous": 302, "stranger": 404, "viewer": 403, "contributor": 302, "owner": 302},
        ui=True,
    )
    created = Project.objects.exclude(slug="vision").order_by("slug")
    assert [p.slug for p in created] == ["new3", "new4"]
    mine = created[0]
    assert mine.visibility == "workspace" and mine.created_by == contributor
    assert ProjectGrant.objects.get(project=mine, user=contributor).role == "owner"
    # the workspace page offers the form only to those who may use it
    assert "Create project" in text(browser(contributor).get("/w/acme/"))
    assert "Create project" not in text(browser(world["viewer"]).get("/w/acme/"))


def test_project_creation_shows_the_services_error_on_its_field(world, owner):
    taken = browser(owner).post(WS + "new-project", {"slug": "vision", "visibility": "private"})
    assert taken.status_code == 400 and "already exists" in str(taken.context["form"].errors["slug"])
    bad_key = browser(owner).post(WS + "new-project", {"slug": "other", "key": "9", "visibility": "private"})
    assert bad_key.status_code == 400 and bad_key.context["form"].errors["key"]


def test_project_members_page_is_visible_to_project_members(world):
    responses = role_matrix(world, lambda c: c.get(PROJECT + "members"), VIEW, ui=True)
    assert 'id="grant-form"' in text(responses["owner"])
    for role in ("viewer", "contributor"):
        assert 'id="grant-form"' not in text(responses[role]) and "Change role" not in text(responses[role])


def test_project_members_are_added_changed_and_removed_by_project_managers(world, owner, stranger):
    workspace = acme()
    no_delete = project_services.save_custom_role(workspace, "No delete", ["delete"], by=owner)
    project = Project.objects.get(slug="vision")
    role_matrix(
        world,
        lambda c: c.post(PROJECT + "members", {"member": "stranger", "role": "role:viewer"}),
        {**MANAGE_PROJECT, "stranger": 404},
        ui=True,
        check={"contributor": lambda r: not ProjectGrant.objects.filter(user=stranger).exists()},
    )
    grant = ProjectGrant.objects.get(user=stranger, project=project)
    assert grant.role == "viewer"
    client = browser(owner)
    assert client.post(f"{PROJECT}members/{grant.pk}", {"role": "role:contributor"}).status_code == 302
    grant.refresh_from_db()
    assert grant.role == "contributor"
    # a custom role as a denial: the contributor may no longer delete runs
    denial = client.post(PROJECT + "members", {"member": "contributor", "role": f"custom:{no_delete.pk}", "deny": "on"})
    assert denial.status_code == 302
    assert ProjectGrant.objects.get(user=world["contributor"], deny=True).custom_role == no_delete
    assert "Delete</button>" not in text(browser(world["contributor"]).get(PROJECT))
    builtin_deny = client.post(PROJECT + "members", {"member": "viewer", "role": "role:owner", "deny": "on"})
    assert builtin_deny.status_code == 400 and builtin_deny.context["form"].errors["deny"]
    assert browser(world["contributor"]).post(f"{PROJECT}members/{grant.pk}/remove").status_code == 403
    assert client.post(f"{PROJECT}members/{grant.pk}/remove").status_code == 302
    assert not ProjectGrant.objects.filter(pk=grant.pk).exists()


def test_project_members_page_query_count_does_not_grow_with_grants(world, owner, django_assert_max_num_queries):
    project = Project.objects.get(slug="vision")
    reader = project_services.save_custom_role(acme(), "Reader", ["view", "export"], by=owner)
    for i in range(12):
        project_services.set_project_role(project, project_services.create_team(acme(), f"team{i}"), "viewer")
        user = make_user(f"grantee{i}")
        if i % 2:
            project_services.grant_custom_role(project, user, reader, by=owner)
        else:
            project_services.set_project_role(project, user, "viewer", by=owner)
    client = browser(owner)
    with django_assert_max_num_queries(12):
        response = client.get(PROJECT + "members")
    assert response.status_code == 200 and "grantee11" in text(response)


def test_the_last_project_owner_is_protected(world, owner):
    grant = ProjectGrant.objects.get(user=owner, role="owner")
    client = browser(owner)
    demote = client.post(f"{PROJECT}members/{grant.pk}", {"role": "role:viewer"})
    assert demote.status_code == 400 and "last owner" in text(demote)
    remove = client.post(f"{PROJECT}members/{grant.pk}/remove")
    assert remove.status_code == 400 and "last owner" in text(remove)
    grant.refresh_from_db()
    assert grant.role == "owner"


def test_project_settings_are_for_project_managers(world):
    role_matrix(
        world,
        lambda c: c.get(PROJECT + "settings"),
        {"anonymous": 302, "stranger": 404, "viewer": 403, "contributor": 403, "owner": 200},
        ui=True,
    )
    role_matrix(
        world,
        lambda c: c.post(PROJECT + "settings", {"description": "cats", "visibility": "workspace"}),
        MANAGE_PROJECT,
        ui=True,
        check={"contributor": lambda r: Project.objects.get(slug="vision").description == ""},
    )
    project = Project.objects.get(slug="vision")
    assert (project.description, project.visibility) == ("cats", "workspace")


def test_deleting_a_project_needs_its_name_typed(world, owner):
    role_matrix(
        world,
        lambda c: c.post(PROJECT + "delete", {"confirm": "vision"}),
        MANAGE_PROJECT,
        ui=True,
        check={"contributor": lambda r: Project.objects.filter(slug="vision").exists()},
    )
    assert not Project.objects.filter(slug="vision").exists()


def test_deleting_a_project_with_the_wrong_name_keeps_it(world, owner):
    response = browser(owner).post(PROJECT + "delete", {"confirm": "visio"})
    assert response.status_code == 400 and "type vision" in text(response)
    assert Project.objects.filter(slug="vision").exists()


def test_workspace_page_shows_usage_against_quota(world, owner):
    workspace = acme()
    project_services.set_quota(workspace, by=None, storage_bytes=10 * 1024 * 1024, projects=4)
    responses = role_matrix(world, lambda c: c.get("/w/acme/"), VIEW, ui=True)
    page = text(responses["contributor"])
    assert 'id="usage"' in page and "10.0\xa0MB" in page
    assert '<meter min="0" max="100"' in page and "25.0%" in page  # one project of four


# ---- write controls by role on the run pages ---------------------------------


def test_run_table_shows_write_and_delete_controls_by_action(world, owner, viewer):
    contributor_page = text(browser(world["contributor"]).get(PROJECT))
    assert "Add tag" in contributor_page and 'value="delete"' in contributor_page
    viewer_page = text(browser(viewer).get(PROJECT))
    assert "Add tag" not in viewer_page and 'value="delete"' not in viewer_page and "Settings</a>" not in viewer_page
    assert "Settings</a>" in text(browser(owner).get(PROJECT))
    # a custom role that logs runs but may not delete them: tags yes, trash no
    workspace = acme()
    logger = project_services.save_custom_role(workspace, "Logger", ["view", "write"], by=owner)
    project = Project.objects.get(slug="vision")
    project_services.remove_project_grant(project, viewer, by=owner)
    project_services.grant_custom_role(project, viewer, logger, by=owner)
    logger_page = text(browser(viewer).get(PROJECT))
    assert "Add tag" in logger_page and 'value="delete"' not in logger_page
    run = world["run"]
    refused = browser(viewer).post(PROJECT, {"action": "delete", "runs": run.human_id})
    assert refused.status_code == 403


def test_trash_offers_restore_only_to_those_who_may_delete(world, owner, viewer):
    from runs import services as run_services

    run_services.delete_run(owner, world["run"])
    assert "Restore selected" in text(browser(world["contributor"]).get(PROJECT + "trash"))
    assert "Restore selected" not in text(browser(viewer).get(PROJECT + "trash"))


def test_a_refused_page_says_why_and_an_invisible_one_says_nothing(world):
    refused = browser(world["viewer"]).get("/w/acme/vision/settings")
    assert refused.status_code == 403 and "You may not manage this project." in text(refused)
    hidden = browser(world["stranger"]).get("/w/acme/vision/settings")
    assert hidden.status_code == 404 and "vision" not in text(hidden).split("<main", 1)[-1]
