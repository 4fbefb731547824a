"""The projects app in Django admin, as an operator runs an installation from it: every form writes
through the services, so each change gives exactly the rights it names (checked with the permission
module) and exactly its audit entries; a refusal (the last owner) is an error that changes nothing;
secrets are shown once; sizes read as sizes with a percentage; derived tables cannot be edited; and
list pages cost the same number of queries however many rows they show."""

import re
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.forms import MultiWidget
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import ApiToken
from projects import services
from projects.models import (
    AuditEvent,
    CustomRole,
    Membership,
    Project,
    ProjectGroupObjectPermission,
    ProjectUsage,
    ProjectUserObjectPermission,
    ServiceAccount,
    Team,
    TokenWorkspace,
    Visibility,
    WorkspaceGroupObjectPermission,
    WorkspaceQuota,
    WorkspaceRole,
    WorkspaceUserObjectPermission,
)
from projects.permissions import can, project_actions

MB = 1024 * 1024


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.org", "pw")


@pytest.fixture
def root_client(root):
    client = Client()
    client.force_login(root)
    return client


def audit_counts() -> Counter:
    return Counter(AuditEvent.objects.values_list("action", flat=True))


class Audited:
    """The audit entries written inside the block, by action (entries are never deleted)."""

    def __enter__(self):
        self.before = audit_counts()
        return self

    def __exit__(self, *exc):
        self.new = audit_counts() - self.before


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def form_data(client, url) -> dict:
    """What the admin's change page would post back unchanged: its form and every inline."""
    page = client.get(url)
    assert page.status_code == 200, url
    forms = [page.context["adminform"].form]
    data = {}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        forms.extend(formset.forms)
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None:
                value = ""
            widget = bound.field.widget
            if isinstance(widget, MultiWidget):  # split date and time
                for i, part in enumerate(widget.decompress(value) if value else ["", ""]):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
                continue
            if isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
                continue
            data[bound.html_name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)
    return data


def inline_row(data, prefix, **values) -> None:
    n = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(n + 1)
    for name, value in values.items():
        data[f"{prefix}-{n}-{name}"] = value


def inline_index(data, prefix, field, value) -> int:
    """The index of the inline row whose ``field`` posts ``value``."""
    return next(i for i in range(int(data[f"{prefix}-TOTAL_FORMS"])) if data.get(f"{prefix}-{i}-{field}") == str(value))


def text(response) -> str:
    return response.content.decode().replace("\xa0", " ")


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ---- teams ----------------------------------------------------------------------------


def test_a_team_created_in_admin_gets_its_members_and_its_role_gives_them_the_workspace(
    root_client, workspace, viewer, stranger
):
    with Audited() as audited:
        response = root_client.post(
            reverse("admin:projects_team_add"),
            {"workspace": workspace.pk, "name": "vision-team", "description": "", "members": [viewer.pk, stranger.pk]},
        )
    assert response.status_code == 302, text(response)
    team = Team.objects.get(workspace=workspace, name="vision-team")
    assert set(team.members) == {viewer, stranger}
    assert audited.new == Counter({"team.created": 1})

    data = form_data(root_client, change_url(workspace))
    inline_row(data, "memberships", team=team.pk, role="member")
    with Audited() as audited:
        assert root_client.post(change_url(workspace), data).status_code == 302
    assert Membership.objects.get(workspace=workspace, team=team).role == "member"
    assert audited.new == Counter({"member.added": 1})
    assert can(stranger, "view", workspace) and can(stranger, "write", workspace)
    assert not can(stranger, "manage", workspace)

    data = form_data(root_client, change_url(team))
    assert sorted(data["members"]) == sorted([str(viewer.pk), str(stranger.pk)])
    data["members"] = [str(viewer.pk)]
    with Audited() as audited:
        assert root_client.post(change_url(team), data).status_code == 302
    assert list(team.members) == [viewer]
    assert audited.new == Counter({"team.members_changed": 1})
    assert not can(stranger, "view", workspace) and can(viewer, "write", workspace)


def test_the_user_form_never_takes_a_user_out_of_their_teams(root_client, workspace, stranger, owner):
    team = services.create_team(workspace, "crew", by=owner, members=[stranger])
    page = root_client.get(change_url(stranger))
    assert team.group not in page.context["adminform"].form.fields["groups"].queryset  # edited as the team
    data = form_data(root_client, change_url(stranger))
    data["groups"] = []  # what the browser posts: the team is not among the choices
    data["first_name"] = "Stranger"
    response = root_client.post(change_url(stranger), data)
    assert response.status_code == 302, text(response)
    assert list(team.members) == [stranger]


# ---- custom roles and project grants ------------------------------------------------------------


def test_custom_roles_saved_in_admin_grant_and_deny_exactly_their_actions(
    root_client, project, workspace, stranger, contributor
):
    with Audited() as audited:
        response = root_client.post(
            reverse("admin:projects_customrole_add"),
            {"workspace": workspace.pk, "name": "logger", "description": "", "actions": ["view", "write"]},
        )
        assert response.status_code == 302, text(response)
        root_client.post(
            reverse("admin:projects_customrole_add"),
            {"workspace": workspace.pk, "name": "no-delete", "description": "", "actions": ["delete"]},
        )
    logger = CustomRole.objects.get(name="logger")
    no_delete = CustomRole.objects.get(name="no-delete")
    assert logger.actions == ["view", "write"] and no_delete.actions == ["delete"]
    assert audited.new == Counter({"custom_role.created": 2})

    assert "delete" in project_actions(contributor, project.pk)
    data = form_data(root_client, change_url(project))
    inline_row(data, "grants", user=stranger.pk, role="", custom_role=logger.pk)
    inline_row(data, "grants", user=contributor.pk, role="", custom_role=no_delete.pk, deny="on")
    with Audited() as audited:
        response = root_client.post(change_url(project), data)
    assert response.status_code == 302, text(response)
    assert project_actions(stranger, project.pk) == {"view", "write"}
    assert project_actions(contributor, project.pk) == {"view", "export", "write"}
    assert audited.new == Counter({"project_member.added": 2})

    # the role changes: its grants follow, through the service
    data = form_data(root_client, change_url(logger))
    data["actions"] = ["view", "export", "write"]
    with Audited() as audited:
        assert root_client.post(change_url(logger), data).status_code == 302
    assert project_actions(stranger, project.pk) == {"view", "export", "write"}
    assert audited.new == Counter({"custom_role.changed": 1})

    # removing the grant on the project's page takes the rights away
    data = form_data(root_client, change_url(project))
    row = inline_index(data, "grants", "user", stranger.pk)
    data[f"grants-{row}-DELETE"] = "on"
    with Audited() as audited:
        assert root_client.post(change_url(project), data).status_code == 302
    assert project_actions(stranger, project.pk) == frozenset()
    assert audited.new == Counter({"project_member.removed": 1})


def test_a_team_granted_a_built_in_project_role_in_admin_gives_it_to_its_members(root_client, project, owner, stranger):
    team = services.create_team(project.workspace, "readers", by=owner, members=[stranger])
    data = form_data(root_client, change_url(project))
    inline_row(data, "grants", team=team.pk, role="viewer", custom_role="")
    with Audited() as audited:
        assert root_client.post(change_url(project), data).status_code == 302
    assert project_actions(stranger, project.pk) == {"view", "export"}
    assert audited.new == Counter({"project_member.added": 1})


def test_a_project_created_and_changed_in_admin_goes_through_the_services(root_client, workspace, contributor):
    with Audited() as audited:
        response = root_client.post(
            reverse("admin:projects_project_add"),
            {"workspace": workspace.pk, "slug": "nlp", "key": "", "visibility": "private", "description": "text"},
        )
    assert response.status_code == 302, text(response)
    nlp = Project.objects.get(workspace=workspace, slug="nlp")
    assert nlp.key == "NLP" and audited.new == Counter({"project.created": 1})
    assert not can(contributor, "view", nlp)

    data = form_data(root_client, change_url(nlp))
    data["visibility"] = Visibility.WORKSPACE
    with Audited() as audited:
        assert root_client.post(change_url(nlp), data).status_code == 302
    assert audited.new == Counter({"project.settings_changed": 1})
    assert can(contributor, "view", nlp) and not can(contributor, "write", nlp)

    delete = reverse("admin:projects_project_delete", args=[nlp.pk])
    assert root_client.get(delete).status_code == 200
    with Audited() as audited:
        assert root_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Project.objects.filter(pk=nlp.pk).exists()
    assert audited.new == Counter({"project.deleted": 1})


# ---- service accounts and their tokens ------------------------------------------------------------


def test_a_service_account_made_in_admin_gets_a_bound_token_shown_once(root_client, workspace, project):
    with Audited() as audited:
        response = root_client.post(
            reverse("admin:projects_serviceaccount_add"),
            {"workspace": workspace.pk, "username": "ci-bot", "role": "member", "description": "CI"},
        )
    assert response.status_code == 302, text(response)
    account = ServiceAccount.objects.select_related("user").get(user__username="ci-bot")
    bot = account.user
    assert account.workspace == workspace and not bot.has_usable_password()
    assert Membership.objects.get(workspace=workspace, user=bot).role == WorkspaceRole.MEMBER
    assert audited.new == Counter({"service_account.created": 1})
    assert can(bot, "view", workspace) and can(bot, "write", workspace) and not can(bot, "view", project)

    with Audited() as audited:
        issued = root_client.post(
            reverse("admin:projects_serviceaccount_changelist"),
            {"action": "issue_token", "_selected_action": [account.pk]},
            follow=True,
        )
    assert issued.status_code == 200
    raw = re.search(r"rs_[0-9a-f]+_[A-Za-z0-9_-]+", " ".join(shown_messages(issued))).group(0)
    token = ApiToken.objects.get(user=bot)
    assert ApiToken.find(raw) == token
    assert TokenWorkspace.objects.get(token=token).workspace == workspace
    assert audited.new == Counter({"token.issued": 1})

    secret = raw.removeprefix(token.prefix + "_")
    pages = [
        root_client.get(reverse("admin:accounts_apitoken_changelist")),
        root_client.get(change_url(token)),
        root_client.get(change_url(account)),
        root_client.get(reverse("admin:projects_serviceaccount_changelist")),
        root_client.get(reverse("admin:projects_auditevent_changelist")),
    ]
    for page in pages:
        assert page.status_code == 200
        assert secret not in page.content.decode()
    assert token.prefix in text(pages[0]) and token.prefix in text(pages[1])
    assert not AuditEvent.objects.filter(details__icontains=secret).exists()
    listing = pages[0].context["cl"]
    assert listing.model_admin.workspace(token) == workspace  # the "workspace" column

    users = root_client.get(reverse("admin:auth_user_changelist") + "?service=yes")
    assert [u.username for u in users.context["cl"].result_list] == ["ci-bot"]
    assert "acme" in text(users)


def test_a_service_account_cannot_be_given_a_password_in_admin(root_client, workspace, owner):
    bot = services.create_service_account(workspace, "ci-bot", by=owner).user
    page = root_client.get(change_url(bot))
    url = reverse("admin:auth_user_password_change", args=[bot.pk])
    shown = [name for _, options in page.context["adminform"].fieldsets for name in options["fields"]]
    assert page.status_code == 200 and "password" not in shown and url not in text(page)
    refused = root_client.post(url, {"password1": "x-Secret-123", "password2": "x-Secret-123"}, follow=True)
    assert any("has no password" in m for m in shown_messages(refused))
    bot.refresh_from_db()
    assert not bot.has_usable_password()


def test_a_service_account_token_issued_on_the_token_page_is_bound_to_its_workspace(root_client, workspace, owner):
    bot = services.create_service_account(workspace, "ci-bot", by=owner).user
    response = root_client.post(
        reverse("admin:accounts_apitoken_add"),
        {"user": bot.pk, "name": "deploy", "scope": "read", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(user=bot)
    assert token.scope == "read" and TokenWorkspace.objects.get(token=token).workspace == workspace


# ---- quotas and usage --------------------------------------------------------------------------


def test_a_quota_set_in_admin_shows_usage_in_sizes_and_percentages(root_client, workspace, project):
    ProjectUsage.objects.create(project=project, total_bytes=int(2.5 * MB), blob_bytes=int(2.5 * MB))
    data = form_data(root_client, change_url(workspace))
    data["quota-0-storage_bytes"] = "10 MB"
    data["quota-0-projects"] = "5"
    with Audited() as audited:
        response = root_client.post(change_url(workspace), data)
    assert response.status_code == 302, text(response)
    quota = WorkspaceQuota.objects.get(workspace=workspace)
    assert (quota.storage_bytes, quota.projects, quota.upload_bytes) == (10 * MB, 5, None)
    assert audited.new == Counter({"quota.changed": 1})

    page = text(root_client.get(change_url(workspace)))
    assert "2.5 MB of 10.0 MB (25.0%)" in page and "1 of 5 (20.0%)" in page
    assert 'value="10 MB"' in page
    for listing in ("admin:projects_workspacequota_changelist", "admin:projects_workspace_changelist"):
        assert "2.5 MB of 10.0 MB (25.0%)" in text(root_client.get(reverse(listing)))
    assert "2.5 MB" in text(root_client.get(reverse("admin:projects_projectusage_changelist")))
    assert str(int(2.5 * MB)) not in text(root_client.get(reverse("admin:projects_workspacequota_changelist")))


def test_a_quota_that_is_not_a_size_is_a_form_error_and_changes_nothing(root_client, workspace):
    data = form_data(root_client, change_url(workspace))
    data["quota-0-storage_bytes"] = "ten gigs"
    with Audited() as audited:
        response = root_client.post(change_url(workspace), data)
    assert response.status_code == 200 and "Enter a size" in text(response)
    assert not WorkspaceQuota.objects.filter(workspace=workspace).exists() and not audited.new


# ---- members and the last owner -------------------------------------------------------------------


def test_members_added_and_changed_on_the_workspace_page_get_their_rights(
    root_client, workspace, stranger, contributor
):
    data = form_data(root_client, change_url(workspace))
    inline_row(data, "memberships", user=stranger.pk, role="member")
    data[f"memberships-{inline_index(data, 'memberships', 'user', contributor.pk)}-role"] = "admin"
    with Audited() as audited:
        response = root_client.post(change_url(workspace), data)
    assert response.status_code == 302, text(response)
    assert audited.new == Counter({"member.added": 1, "member.role_changed": 1})
    assert can(stranger, "write", workspace) and not can(stranger, "manage", workspace)
    assert can(contributor, "manage", workspace)


def test_removing_or_demoting_the_last_owner_shows_an_error_and_changes_nothing(root_client, workspace, owner, project):
    for change in ("DELETE", "role"):
        data = form_data(root_client, change_url(workspace))
        row = inline_index(data, "memberships", "user", owner.pk)
        data[f"memberships-{row}-{change}"] = "on" if change == "DELETE" else "member"
        data["name"] = "Renamed"  # rolled back with the rest
        with Audited() as audited:
            response = root_client.post(change_url(workspace), data, follow=True)
        assert response.status_code == 200
        assert any("last owner" in m for m in shown_messages(response)), shown_messages(response)
        assert not audited.new
        assert Membership.objects.get(workspace=workspace, user=owner).role == WorkspaceRole.OWNER
        workspace.refresh_from_db()
        assert workspace.name == "Acme" and can(owner, "manage", workspace)

    membership = Membership.objects.get(workspace=workspace, user=owner)
    delete = reverse("admin:projects_membership_delete", args=[membership.pk])
    response = root_client.post(delete, {"post": "yes"}, follow=True)
    assert any("last owner" in m for m in shown_messages(response))
    assert Membership.objects.filter(pk=membership.pk).exists()

    response = root_client.post(
        reverse("admin:projects_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [membership.pk], "post": "yes"},
        follow=True,
    )
    assert any("last owner" in m for m in shown_messages(response))
    assert Membership.objects.filter(pk=membership.pk).exists()

    # the project's last owner too
    data = form_data(root_client, change_url(project))
    data[f"grants-{inline_index(data, 'grants', 'user', owner.pk)}-DELETE"] = "on"
    with Audited() as audited:
        response = root_client.post(change_url(project), data, follow=True)
    assert any("last owner" in m for m in shown_messages(response)) and not audited.new
    assert project_actions(owner, project.pk) == {"view", "export", "write", "delete", "manage"}


# ---- derived tables and list pages ------------------------------------------------------------------

GUARDIAN = [
    WorkspaceUserObjectPermission,
    WorkspaceGroupObjectPermission,
    ProjectUserObjectPermission,
    ProjectGroupObjectPermission,
]


@pytest.mark.parametrize("model", GUARDIAN, ids=lambda m: m.__name__)
def test_guardian_tables_cannot_be_added_to_changed_or_deleted(root_client, project, owner, stranger, model):
    team = services.create_team(project.workspace, "crew", by=owner, members=[stranger])
    services.set_membership(project.workspace, team, "member", by=owner)
    services.set_project_role(project, team, "viewer", by=owner)
    name = model._meta.model_name
    listing = root_client.get(reverse(f"admin:projects_{name}_changelist"))
    assert listing.status_code == 200 and listing.context["cl"].result_count > 0
    assert not listing.context["has_add_permission"]
    assert reverse(f"admin:projects_{name}_add") not in text(listing)
    assert root_client.get(reverse(f"admin:projects_{name}_add")).status_code == 403
    row = model.objects.first()
    before = model.objects.count()
    root_client.post(reverse(f"admin:projects_{name}_delete", args=[row.pk]), {"post": "yes"})
    root_client.post(
        reverse(f"admin:projects_{name}_changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert model.objects.count() == before
    page = root_client.get(change_url(row))
    assert page.status_code == 200 and not page.context["has_change_permission"]


def grow(owner, n):
    """A workspace with a project, a team, a custom role, grants, a service account with a token,
    a quota and usage: one more row in every list the projects admin shows."""
    workspace = services.create_workspace(owner, f"ws{n}")
    project = services.create_project(owner, workspace, f"p{n}")
    member = User.objects.create_user(f"member{n}")
    team = services.create_team(workspace, f"team{n}", by=owner, members=[member])
    services.set_membership(workspace, team, "member", by=owner)
    role = services.save_custom_role(workspace, f"role{n}", ["view"], by=owner)
    services.grant_custom_role(project, member, role, by=owner)
    services.set_project_role(project, team, "viewer", by=owner)
    bot = services.create_service_account(workspace, f"bot{n}", by=owner).user
    services.issue_token(bot, name="ci", by=owner)
    services.set_quota(workspace, by=None, storage_bytes=(n + 1) * MB)
    ProjectUsage.objects.create(project=project, total_bytes=n * 1000)
    from projects import quotas

    quotas.used_bytes(workspace)


LISTS = [
    "auth_user",
    "auth_group",
    "accounts_apitoken",
    "projects_tokenworkspace",
    "projects_team",
    "projects_workspace",
    "projects_membership",
    "projects_project",
    "projects_projectgrant",
    "projects_customrole",
    "projects_serviceaccount",
    "projects_workspacequota",
    "projects_workspaceusage",
    "projects_projectusage",
    *[f"projects_{model._meta.model_name}" for model in GUARDIAN],
]


def test_list_pages_cost_the_same_queries_for_two_rows_or_six(root_client, owner):
    def queries():
        counts = {}
        for name in LISTS:
            with CaptureQueriesContext(connection) as captured:
                assert root_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
            counts[name] = len(captured)
        return counts

    for n in range(2):
        grow(owner, n)
    few = queries()
    for n in range(2, 6):
        grow(owner, n)
    many = queries()
    assert many == few
    assert max(few.values()) <= 20, few


def test_staff_who_are_not_superusers_see_and_change_only_workspaces_they_manage(owner, workspace, stranger):
    from django.contrib.auth.models import Permission

    other = services.create_workspace(stranger, "globex")
    services.create_team(other, "theirs", by=stranger)
    services.create_team(workspace, "ours", by=owner)
    operator = User.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(content_type__model="team"))
    services.set_membership(workspace, operator, "admin", by=owner)
    client = Client()
    client.force_login(operator)

    listing = client.get(reverse("admin:projects_team_changelist"))
    assert [str(team) for team in listing.context["cl"].result_list] == ["acme/ours"]
    with Audited() as audited:
        refused = client.post(
            reverse("admin:projects_team_add"),
            {"workspace": other.pk, "name": "intruders", "description": "", "members": [operator.pk]},
            follow=True,
        )
    assert any(m.startswith("Nothing was changed") for m in shown_messages(refused)), shown_messages(refused)
    assert not Team.objects.filter(name="intruders").exists() and not audited.new
    with Audited() as audited:
        created = client.post(
            reverse("admin:projects_team_add"),
            {"workspace": workspace.pk, "name": "crew", "description": "", "members": [stranger.pk]},
        )
    assert created.status_code == 302
    assert AuditEvent.objects.get(action="team.created", target="acme/crew").actor == operator
    assert audited.new == Counter({"team.created": 1})


def test_a_workspace_created_in_admin_is_owned_by_the_operator_and_cannot_be_deleted_here(root_client, root):
    with Audited() as audited:
        response = root_client.post(reverse("admin:projects_workspace_add"), {"slug": "initech", "name": "Initech"})
    assert response.status_code == 302, text(response)
    created = Membership.objects.select_related("workspace").get(workspace__slug="initech")
    assert (created.user, created.role) == (root, WorkspaceRole.OWNER)
    assert audited.new == Counter({"workspace.created": 1})
    delete = reverse("admin:projects_workspace_delete", args=[created.workspace.pk])
    assert root_client.post(delete, {"post": "yes"}).status_code == 403
