"""``permissions.readable_project_ids``: the projects a caller may act on, read by one prepared statement,
is exactly :func:`permissions.scope_projects`'s answer for every principal and action (workspace roles,
project roles, teams, workspace-visible projects, denials, token scopes and bindings, superusers)."""

import pytest
from django.contrib.auth.models import User

from projects import permissions
from projects import services as project_services
from projects.models import Project, ProjectRole, WorkspaceRole


@pytest.fixture
def people(db):
    def user(name, **extra):
        return User.objects.create_user(name, password="pw", **extra)

    founder = user("founder")
    acme = project_services.create_workspace(founder, "acme", "Acme")
    beta = project_services.create_workspace(founder, "beta", "Beta")
    private = project_services.create_project(founder, acme, "private", key="PRI")
    open_ = project_services.create_project(founder, acme, "open", key="OPN", visibility="workspace")
    other = project_services.create_project(founder, beta, "other", key="OTH")
    crowd = {name: user(name) for name in ("admin", "member", "viewer", "teammate", "denied", "stranger", "tokened")}
    crowd["root"] = user("root", is_superuser=True)
    project_services.set_membership(acme, crowd["admin"], WorkspaceRole.ADMIN, by=founder)
    project_services.set_membership(acme, crowd["member"], WorkspaceRole.MEMBER, by=founder)
    project_services.set_project_role(private, crowd["viewer"], ProjectRole.VIEWER, by=founder)
    team = project_services.create_team(acme, "ml", by=founder, members=[crowd["teammate"]])
    project_services.set_project_role(private, team, ProjectRole.CONTRIBUTOR, by=founder)
    project_services.set_membership(acme, crowd["denied"], WorkspaceRole.ADMIN, by=founder)
    no_view = project_services.save_custom_role(acme, "no view", ["view"], by=founder)
    project_services.grant_custom_role(open_, crowd["denied"], no_view, deny=True, by=founder)
    no_delete = project_services.save_custom_role(acme, "no delete", ["delete"], by=founder)
    project_services.grant_custom_role(private, crowd["denied"], no_delete, deny=True, by=founder)
    project_services.set_membership(beta, crowd["tokened"], WorkspaceRole.ADMIN, by=founder)
    project_services.set_project_role(private, crowd["tokened"], ProjectRole.OWNER, by=founder)
    crowd["founder"] = founder
    callers = dict(crowd)
    for name, scope, workspace in (("read", "read", None), ("bound", "admin", beta), ("root_bound", "admin", acme)):
        holder = crowd["root"] if name == "root_bound" else crowd["tokened"]
        token, _ = project_services.issue_token(holder, name=name, scope=scope, workspace=workspace)
        caller = User.objects.get(pk=holder.pk)
        caller.api_token = token
        callers[f"token_{name}"] = caller
    assert {p.slug for p in (private, open_, other)} == {"private", "open", "other"}
    return callers


@pytest.mark.parametrize("action", permissions.PROJECT_ACTIONS)
def test_readable_project_ids_is_the_rule_of_scope_projects_for_everyone(people, action):
    every = sorted(Project.objects.values_list("pk", flat=True))
    for name, caller in people.items():
        expected = sorted(
            permissions.scope_projects(Project.objects.all(), caller, action).values_list("pk", flat=True)
        )
        found = permissions.readable_project_ids(caller, action)
        assert (every if found is None else found) == expected, (name, action)


def test_anonymous_reads_no_project(people):
    from django.contrib.auth.models import AnonymousUser

    assert permissions.readable_project_ids(AnonymousUser()) == []


def test_readable_project_ids_is_one_statement(people, django_assert_num_queries):
    with django_assert_num_queries(1):
        permissions.readable_project_ids(people["teammate"])
