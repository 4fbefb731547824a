"""The audit log: every audited event writes exactly one entry saying who, what, when and from where
(address, user agent, request id, token prefix); a change that changes nothing writes none; entries
cannot be changed; the admin lists, filters, searches and exports them read-only; old entries are
purged after the retention period; secrets never reach it."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from projects import services
from projects.models import AuditEvent, CustomRole, ProjectRole, Team, WorkspaceRole
from projects.querysets import AuditEventImmutable
from projects.tasks import purge_audit
from runs import exports
from runs import services as run_services
from runs.models import Run
from tracker.context import RequestContextMiddleware

from .conftest import run_url

ADDRESS = "198.51.100.23"
AGENT = "audit-test/1.0"
ADMIN_LIST = "/admin/projects/auditevent/"


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


# ---- helpers --------------------------------------------------------------------------------


def mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def since(start: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(id__gt=start).order_by("id"))


def only_one(start: int) -> AuditEvent:
    events = since(start)
    assert len(events) == 1, [(e.action, e.target, e.details) for e in events]
    return events[0]


def in_request(call, address=ADDRESS, agent=AGENT):
    """Run ``call`` inside a request passing through the request-context middleware, as a view
    calling a service does; returns (its result, the response's request id)."""
    request = RequestFactory().get("/", REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
    out = {}

    def view(req):
        out["result"] = call()
        return HttpResponse()

    response = RequestContextMiddleware(view)(request)
    return out["result"], response["X-Request-ID"]


def assert_from(event: AuditEvent, request_id: str, *, address=ADDRESS, agent=AGENT, token_prefix=""):
    assert (event.address, event.user_agent, event.request_id, event.token_prefix) == (
        address,
        agent,
        request_id,
        token_prefix,
    )


def token_client(user, **extra):
    token, raw = ApiToken.issue(user, name="audit-test")
    client = APIClient(**{"REMOTE_ADDR": ADDRESS, "HTTP_USER_AGENT": AGENT, **extra})
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, token


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.org", "pw-root")


@pytest.fixture
def root_client(root):
    client = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    client.force_login(root)
    return client


# ---- logins -----------------------------------------------------------------------------------


def test_a_login_is_one_entry_with_the_address_user_agent_and_request_id(owner):
    start = mark()
    response = Client().post(
        "/accounts/login/", {"username": "owner", "password": "pw-owner"}, REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT
    )
    assert response.status_code == 302
    event = only_one(start)
    assert (event.action, event.actor, event.actor_name, event.target) == ("login", owner, "owner", "owner")
    assert_from(event, response["X-Request-ID"])


def test_a_failed_login_names_the_username_tried_never_the_password(owner):
    start = mark()
    client = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    wrong = client.post("/accounts/login/", {"username": "owner", "password": "Hunter2-secret"})
    unknown = client.post("/accounts/login/", {"username": "nobody", "password": "Hunter2-secret"})
    assert wrong.status_code == unknown.status_code == 200
    first, second = since(start)
    assert (first.action, first.actor, first.target_type, first.target) == ("login.failed", None, "user", "owner")
    assert first.details["username"] == "owner" and first.details["failures"] == 1
    assert (second.action, second.target_type, second.target, second.details["username"]) == (
        "login.failed",
        "",
        "nobody",
        "nobody",
    )
    assert_from(first, wrong["X-Request-ID"])
    assert_from(second, unknown["X-Request-ID"])
    for row in AuditEvent.objects.values():
        assert "Hunter2" not in json.dumps(row, default=str)


def test_a_lockout_is_one_entry_per_attempt(owner, settings):
    limit = settings.AXES_FAILURE_LIMIT
    start = mark()
    client = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    for _ in range(limit):
        client.post("/accounts/login/", {"username": "owner", "password": "wrong"})
    refused = client.post("/accounts/login/", {"username": "owner", "password": "pw-owner"})
    assert refused.status_code == 429
    actions = [e.action for e in since(start)]
    assert actions == ["login.failed"] * (limit - 1) + ["login.locked_out", "login.locked_out"]
    assert all(e.details["username"] == "owner" for e in since(start))


def test_a_logout_is_one_entry_and_a_logout_without_a_session_none(owner):
    client = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT)
    client.force_login(owner)
    start = mark()
    response = client.post("/accounts/logout/")
    event = only_one(start)
    assert (event.action, event.actor, event.target) == ("logout", owner, "owner")
    assert_from(event, response["X-Request-ID"])
    start = mark()
    client.post("/accounts/logout/")
    assert since(start) == []


# ---- tokens -----------------------------------------------------------------------------------


def test_issuing_a_workspace_token_is_one_entry_in_that_workspace(owner, workspace):
    start = mark()
    (token, raw), request_id = in_request(
        lambda: services.issue_token(owner, name="ci", scope="read", workspace=workspace, by=owner)
    )
    event = only_one(start)
    assert (event.action, event.actor, event.workspace, event.target_type, event.target_id) == (
        "token.issued",
        owner,
        workspace,
        "apitoken",
        str(token.pk),
    )
    assert event.target == f"{token.prefix} (owner: ci)"
    assert event.details == {"prefix": token.prefix, "user": "owner", "name": "ci", "scope": "read", "expires_at": None}
    assert_from(event, request_id)
    assert raw.removeprefix(token.prefix + "_") not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_a_token_issued_in_the_admin_is_audited_by_prefix_and_the_secret_is_nowhere_in_the_log(
    root_client, root, owner
):
    start = mark()
    created = root_client.post(
        "/admin/accounts/apitoken/add/",
        {"user": owner.pk, "name": "pipeline", "scope": "write", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    raw = re.search(r"rs_[0-9a-f]+_[A-Za-z0-9_-]+", created.content.decode()).group(0)
    token = ApiToken.find(raw)
    event = only_one(start)
    assert (event.action, event.actor, event.details["prefix"], event.details["user"]) == (
        "token.issued",
        root,
        token.prefix,
        "owner",
    )
    assert (event.address, event.user_agent) == (ADDRESS, AGENT)
    secret = raw.removeprefix(token.prefix + "_")
    _, service_raw = services.issue_token(owner, name="cli", by=owner)
    service_secret = service_raw.split("_", 2)[2]
    for row in AuditEvent.objects.values():
        text = json.dumps(row, default=str)
        for forbidden in (raw, secret, service_raw, service_secret, token.digest):
            assert forbidden not in text
    # nor in the admin's audit pages and exports
    pages = [
        root_client.get(ADMIN_LIST).content.decode(),
        root_client.get(f"{ADMIN_LIST}{event.pk}/change/").content.decode(),
        b"".join(root_client.get(f"{ADMIN_LIST}export/json/").streaming_content).decode(),
    ]
    for page in pages:
        assert secret not in page and service_secret not in page


def test_revoking_a_token_in_the_admin_is_one_entry_and_revoking_it_again_none(root_client, root, owner):
    token, _ = ApiToken.issue(owner, name="gone")
    start = mark()
    response = root_client.post(
        ADMIN_LIST.replace("projects/auditevent", "accounts/apitoken"),
        {
            "action": "revoke_selected",
            "_selected_action": [token.pk],
        },
    )
    assert response.status_code == 302
    event = only_one(start)
    assert (event.action, event.actor, event.details["prefix"]) == ("token.revoked", root, token.prefix)
    assert_from(event, response["X-Request-ID"])
    start = mark()
    services.revoke_token(ApiToken.objects.get(pk=token.pk), by=owner)
    assert since(start) == []


@pytest.mark.parametrize("reason", ["revoked", "expired"])
def test_presenting_a_revoked_or_expired_token_is_one_entry_with_its_prefix(owner, reason):
    client, token = token_client(owner)
    if reason == "revoked":
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    else:
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    start = mark()
    response = client.get("/api/v1/workspaces/")
    assert response.status_code == 401
    event = only_one(start)
    assert (event.action, event.actor, event.target_id, event.details["reason"]) == (
        "token.refused",
        owner,
        str(token.pk),
        reason,
    )
    assert_from(event, response["X-Request-ID"], token_prefix=token.prefix)


# ---- workspaces, members, teams, roles --------------------------------------------------------


def test_creating_a_workspace_over_the_api_is_one_entry(owner):
    client, token = token_client(owner)
    start = mark()
    response = client.post("/api/v1/workspaces/", {"slug": "labs"}, format="json")
    assert response.status_code == 201, response.content
    event = only_one(start)
    assert (event.action, event.actor, event.workspace.slug, event.target) == (
        "workspace.created",
        owner,
        "labs",
        "labs",
    )
    assert_from(event, response["X-Request-ID"], token_prefix=token.prefix)


def test_membership_changes_are_one_entry_each_and_a_no_op_none(owner, workspace, stranger):
    start = mark()
    _, request_id = in_request(lambda: services.set_membership(workspace, stranger, WorkspaceRole.MEMBER, by=owner))
    added = only_one(start)
    assert (added.action, added.actor, added.workspace, added.target, added.details) == (
        "member.added",
        owner,
        workspace,
        "stranger",
        {"role": "member", "previous": None},
    )
    assert_from(added, request_id)

    start = mark()
    services.set_membership(workspace, stranger, WorkspaceRole.MEMBER, by=owner)
    assert since(start) == []

    start = mark()
    services.set_membership(workspace, stranger, WorkspaceRole.ADMIN, by=owner)
    changed = only_one(start)
    assert (changed.action, changed.details) == ("member.role_changed", {"role": "admin", "previous": "member"})

    start = mark()
    services.remove_membership(workspace, stranger, by=owner)
    removed = only_one(start)
    assert (removed.action, removed.target, removed.details) == ("member.removed", "stranger", {"role": "admin"})
    start = mark()
    services.remove_membership(workspace, stranger, by=owner)
    assert since(start) == []


def test_project_role_changes_are_one_entry_each_and_a_no_op_none(owner, project, stranger):
    start = mark()
    _, request_id = in_request(lambda: services.set_project_role(project, stranger, ProjectRole.VIEWER, by=owner))
    added = only_one(start)
    assert (added.action, added.actor, added.project, added.workspace, added.target) == (
        "project_member.added",
        owner,
        project,
        project.workspace,
        "stranger",
    )
    assert added.details == {"role": "viewer", "previous": None, "deny": False, "custom": False}
    assert_from(added, request_id)

    start = mark()
    services.set_project_role(project, stranger, ProjectRole.VIEWER, by=owner)
    assert since(start) == []

    start = mark()
    services.set_project_role(project, stranger, ProjectRole.CONTRIBUTOR, by=owner)
    assert only_one(start).action == "project_member.role_changed"

    start = mark()
    services.remove_project_grant(project, stranger, by=owner)
    assert (only_one(start).action, since(start)[0].details["role"]) == ("project_member.removed", "contributor")


def test_custom_role_changes_and_grants_are_one_entry_each_and_a_no_op_save_none(owner, workspace, project, stranger):
    start = mark()
    role, request_id = in_request(lambda: services.save_custom_role(workspace, "reader", ["view"], by=owner))
    created = only_one(start)
    assert (created.action, created.actor, created.workspace, created.target_type, created.details) == (
        "custom_role.created",
        owner,
        workspace,
        "customrole",
        {"actions": ["view"]},
    )
    assert_from(created, request_id)

    start = mark()
    services.save_custom_role(workspace, "reader", ["view"], by=owner, role=role)
    assert since(start) == []

    start = mark()
    services.save_custom_role(workspace, "reader", ["view", "export"], by=owner, role=role)
    changed = only_one(start)
    assert changed.action == "custom_role.changed" and changed.details["previous"]["actions"] == ["view"]

    start = mark()
    services.grant_custom_role(project, stranger, role, deny=True, by=owner)
    granted = only_one(start)
    assert (granted.action, granted.details["role"], granted.details["deny"], granted.details["custom"]) == (
        "project_member.added",
        "reader",
        True,
        True,
    )
    start = mark()
    services.grant_custom_role(project, stranger, role, deny=True, by=owner)
    assert since(start) == []

    start = mark()
    services.delete_custom_role(CustomRole.objects.get(pk=role.pk), by=owner)
    assert only_one(start).action == "custom_role.deleted"


def test_a_custom_role_named_like_a_built_in_one_replacing_it_is_a_change(owner, workspace, project, stranger):
    services.set_project_role(project, stranger, ProjectRole.VIEWER, by=owner)
    lookalike = services.save_custom_role(workspace, "viewer", ["view"], by=owner)
    start = mark()
    services.grant_custom_role(project, stranger, lookalike, by=owner)
    event = only_one(start)
    assert (event.action, event.details["custom"]) == ("project_member.role_changed", True)


def test_team_changes_are_one_entry_each_and_a_no_op_none(owner, workspace, contributor, stranger):
    start = mark()
    team, request_id = in_request(lambda: services.create_team(workspace, "ml", by=owner, members=[contributor]))
    created = only_one(start)
    assert (created.action, created.actor, created.workspace, created.target, created.details) == (
        "team.created",
        owner,
        workspace,
        "acme/ml",
        {"members": ["contributor"]},
    )
    assert_from(created, request_id)

    start = mark()
    services.set_team_members(team, [contributor], by=owner)
    assert since(start) == []

    start = mark()
    services.set_team_members(team, [stranger], by=owner)
    changed = only_one(start)
    assert (changed.action, changed.details) == (
        "team.members_changed",
        {"added": ["stranger"], "removed": ["contributor"]},
    )

    start = mark()
    services.delete_team(Team.objects.get(pk=team.pk), by=owner)
    assert only_one(start).action == "team.deleted"


def test_creating_a_service_account_is_one_entry_its_membership_included(owner, workspace):
    start = mark()
    account, request_id = in_request(
        lambda: services.create_service_account(workspace, "ci-bot", by=owner, role=WorkspaceRole.MEMBER)
    )
    event = only_one(start)
    assert (event.action, event.actor, event.workspace, event.target, event.details) == (
        "service_account.created",
        owner,
        workspace,
        "ci-bot",
        {"role": "member"},
    )
    assert_from(event, request_id)
    # its token is bound to, and audited in, its workspace
    start = mark()
    token, _ = services.issue_token(account.user, name="ci", by=owner)
    issued = only_one(start)
    assert (issued.action, issued.workspace, issued.details["user"]) == ("token.issued", workspace, "ci-bot")


def test_a_quota_change_is_one_entry_and_setting_the_same_values_none(root, workspace):
    start = mark()
    _, request_id = in_request(lambda: services.set_quota(workspace, by=root, storage_bytes=10_000, projects=3))
    event = only_one(start)
    assert (event.action, event.actor, event.workspace) == ("quota.changed", root, workspace)
    assert event.details == {"storage_bytes": {"from": None, "to": 10_000}, "projects": {"from": None, "to": 3}}
    assert_from(event, request_id)
    start = mark()
    services.set_quota(workspace, by=root, storage_bytes=10_000, projects=3)
    assert since(start) == []


# ---- projects ---------------------------------------------------------------------------------


def test_creating_a_project_over_the_api_is_one_entry_its_owner_grant_included(owner, workspace):
    client, token = token_client(owner)
    start = mark()
    response = client.post("/api/v1/workspaces/acme/projects/", {"slug": "nlp"}, format="json")
    assert response.status_code == 201, response.content
    event = only_one(start)
    assert (event.action, event.actor, event.project.full_name, event.target) == (
        "project.created",
        owner,
        "acme/nlp",
        "acme/nlp",
    )
    assert_from(event, response["X-Request-ID"], token_prefix=token.prefix)


def test_a_project_settings_change_is_one_entry_and_a_no_op_none(owner, project):
    start = mark()
    _, request_id = in_request(
        lambda: services.update_project(project, by=owner, description="cats", visibility="workspace")
    )
    event = only_one(start)
    assert (event.action, event.actor, event.project) == ("project.settings_changed", owner, project)
    assert event.details == {
        "description": {"from": "", "to": "cats"},
        "visibility": {"from": "private", "to": "workspace"},
    }
    assert_from(event, request_id)
    start = mark()
    services.update_project(project, by=owner, description="cats", visibility="workspace")
    assert since(start) == []


def test_deleting_a_project_is_one_entry_that_keeps_its_name(owner, project):
    start = mark()
    _, request_id = in_request(lambda: services.delete_project(project, by=owner))
    event = only_one(start)
    assert (event.action, event.actor, event.target, event.workspace.slug) == (
        "project.deleted",
        owner,
        "acme/vision",
        "acme",
    )
    assert_from(event, request_id)


# ---- runs and exports -------------------------------------------------------------------------


def test_trashing_a_run_over_the_api_is_one_entry_and_trashing_it_again_none(owner, run):
    client, token = token_client(owner)
    start = mark()
    response = client.delete(run_url(run))
    assert response.status_code in (200, 204), response.content
    event = only_one(start)
    assert (event.action, event.actor, event.project, event.target_type, event.target) == (
        "run.deleted",
        owner,
        run.project,
        "run",
        "VIS-1",
    )
    assert_from(event, response["X-Request-ID"], token_prefix=token.prefix)
    start = mark()
    run_services.delete_run(owner, Run.objects.get(pk=run.pk))
    assert since(start) == []


def test_restoring_a_run_in_the_admin_is_one_entry_and_restoring_a_live_run_none(root_client, root, owner, run):
    run_services.restore_run(owner, run)  # live: nothing to restore
    start = mark()
    run_services.delete_run(owner, run)
    assert only_one(start).action == "run.deleted"
    start = mark()
    response = root_client.post("/admin/runs/run/", {"action": "restore_from_trash", "_selected_action": [run.pk]})
    assert response.status_code == 302
    event = only_one(start)
    assert (event.action, event.actor, event.target) == ("run.restored", root, "VIS-1")
    assert_from(event, response["X-Request-ID"])


def test_purging_a_run_in_the_admin_is_one_entry(root_client, root, owner, run):
    run_services.delete_run(owner, run)
    start = mark()
    response = root_client.post("/admin/runs/run/", {"action": "purge_now", "_selected_action": [run.pk]})
    assert response.status_code == 302
    event = only_one(start)
    assert (event.action, event.actor, event.project, event.target, event.details) == (
        "run.purged",
        root,
        run.project,
        "VIS-1",
        {"run_id": run.pk},
    )
    assert_from(event, response["X-Request-ID"])
    assert not Run.objects.filter(pk=run.pk).exists()


def test_an_export_request_and_each_download_are_one_entry_each(
    owner, run, monkeypatch, django_capture_on_commit_callbacks
):
    from runs import tasks

    monkeypatch.setattr(tasks.build_export, "delay", lambda export_id: exports.build(export_id))
    client, token = token_client(owner)
    start = mark()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/exports/", {"project": "acme/vision"}, format="json")
    assert response.status_code == 202, response.content
    requested = only_one(start)
    export_id = response.json()["id"]
    assert (requested.action, requested.actor, requested.project, requested.details) == (
        "export.requested",
        owner,
        run.project,
        {"export": export_id},
    )
    assert_from(requested, response["X-Request-ID"], token_prefix=token.prefix)

    start = mark()
    download = client.get(f"/api/v1/exports/{export_id}/download")
    assert download.status_code == 200
    b"".join(download.streaming_content)
    downloaded = only_one(start)
    assert (downloaded.action, downloaded.actor, downloaded.project, downloaded.details["export"]) == (
        "export.downloaded",
        owner,
        run.project,
        export_id,
    )
    assert_from(downloaded, download["X-Request-ID"], token_prefix=token.prefix)


# ---- never editable, retention ------------------------------------------------------------------


def test_entries_cannot_be_changed_or_deleted(owner, workspace):
    event = AuditEvent.objects.filter(action="workspace.created").get()
    event.action = "nothing happened"
    with pytest.raises(AuditEventImmutable):
        event.save()
    with pytest.raises(AuditEventImmutable):
        event.delete()
    with pytest.raises(AuditEventImmutable):
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing happened")
    with pytest.raises(AuditEventImmutable):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "workspace.created"


def test_the_retention_task_removes_only_entries_older_than_the_retention_period(settings, db):
    settings.RUNSTORE_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    old = AuditEvent.objects.create(action="login", at=now - timedelta(days=31))
    kept = AuditEvent.objects.create(action="login", at=now - timedelta(days=29))
    assert purge_audit.apply().get() == 1
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    settings.RUNSTORE_AUDIT_RETENTION_DAYS = 0  # keep for ever
    AuditEvent.objects.create(action="login", at=now - timedelta(days=3650))
    assert purge_audit.apply().get() == 0 and AuditEvent.objects.count() == 2


def test_the_retention_purge_is_scheduled_daily():
    from tracker.celery import app

    assert any(entry["task"] == "projects.tasks.purge_audit" for entry in app.conf.beat_schedule.values())


# ---- admin --------------------------------------------------------------------------------------


def test_the_admin_lists_entries_but_cannot_add_change_or_delete_them(root_client, owner, workspace):
    event = AuditEvent.objects.filter(action="workspace.created").get()
    listing = root_client.get(ADMIN_LIST)
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "workspace.created" in html and "Export CSV" in html and "Export JSON" in html
    assert f"{ADMIN_LIST}add/" not in html and "delete_selected" not in html
    assert root_client.get(f"{ADMIN_LIST}add/").status_code == 403
    assert root_client.get(f"{ADMIN_LIST}{event.pk}/change/").status_code == 200
    assert root_client.post(f"{ADMIN_LIST}{event.pk}/change/", {"action": "changed"}).status_code == 403
    assert root_client.post(f"{ADMIN_LIST}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    response = root_client.post(ADMIN_LIST, {"action": "delete_selected", "_selected_action": [event.pk]})
    assert AuditEvent.objects.filter(pk=event.pk, action="workspace.created").exists(), response.status_code


def test_the_admin_filters_by_action_and_workspace_and_searches_token_prefix_and_address(root_client, owner, workspace):
    client, token = token_client(owner, REMOTE_ADDR="203.0.113.77")
    client.post("/api/v1/workspaces/", {"slug": "labs"}, format="json")

    def shown(**query):
        return [e.action for e in root_client.get(ADMIN_LIST, query).context["cl"].result_list]

    assert shown(action="workspace.created", workspace__id__exact=workspace.pk) == ["workspace.created"]
    assert shown(q=token.prefix) == ["workspace.created"]
    assert shown(q="203.0.113.77") == ["workspace.created"]
    assert shown(q="owner", action="login") == []
    # the export buttons carry the list's filters and search
    html = root_client.get(ADMIN_LIST, {"action": "workspace.created", "q": "labs"}).content.decode()
    assert f"{ADMIN_LIST}export/csv/?action=workspace.created&amp;q=labs" in html


def test_export_csv_holds_every_filtered_entry_with_its_context(root_client, owner, workspace, stranger):
    in_request(lambda: services.set_membership(workspace, stranger, WorkspaceRole.MEMBER, by=owner))
    services.set_membership(workspace, stranger, WorkspaceRole.ADMIN, by=owner)
    response = root_client.get(f"{ADMIN_LIST}export/csv/", {"q": "stranger", "action": "member.added"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert (row["action"], row["actor"], row["workspace"], row["target"], row["address"], row["user_agent"]) == (
        "member.added",
        "owner",
        "acme",
        "stranger",
        ADDRESS,
        AGENT,
    )
    assert json.loads(row["details"]) == {"previous": None, "role": "member"}


def test_export_json_holds_the_filtered_entries_and_the_selected_ones(root_client, owner, workspace, stranger):
    services.set_membership(workspace, stranger, WorkspaceRole.MEMBER, by=owner)
    services.set_membership(workspace, stranger, WorkspaceRole.ADMIN, by=owner)
    response = root_client.get(f"{ADMIN_LIST}export/json/", {"q": "stranger"})
    assert response["Content-Type"] == "application/json"
    entries = json.loads(b"".join(response.streaming_content))
    assert [e["action"] for e in entries] == ["member.role_changed", "member.added"]
    assert entries[0]["details"] == {"role": "admin", "previous": "member"} and entries[0]["workspace"] == "acme"
    chosen = AuditEvent.objects.get(action="member.added", target="stranger")
    selected = root_client.post(ADMIN_LIST, {"action": "export_selected_json", "_selected_action": [chosen.pk]})
    assert [e["id"] for e in json.loads(b"".join(selected.streaming_content))] == [chosen.pk]


def test_staff_who_are_not_superusers_see_only_entries_of_workspaces_they_manage(owner, workspace, stranger):
    services.create_workspace(stranger, "elsewhere")
    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client()
    client.force_login(owner)
    shown = {e.workspace.slug for e in client.get(ADMIN_LIST).context["cl"].result_list if e.workspace_id}
    assert "acme" in shown and "elsewhere" not in shown
    exported = json.loads(b"".join(client.get(f"{ADMIN_LIST}export/json/").streaming_content))
    assert "elsewhere" not in {e["workspace"] for e in exported}
