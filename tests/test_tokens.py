"""API tokens: refused tokens, scopes, workspace binding, service accounts, and where a secret may never appear."""

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import AuditEvent, Workspace
from runs.models import Run

from .conftest import batch, run_url

LOG = [{"op": "assign", "path": "parameters/lr", "value": 0.1}]


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["status"] == status and body["message"], body
    return body


def _expire(token, raw):
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def _revoke(token, raw):
    project_services.revoke_token(token, by=token.user)


def _deactivate(token, raw):
    User.objects.filter(pk=token.user_id).update(is_active=False)


@pytest.mark.parametrize(
    ("make_unusable", "code"),
    [(_expire, "token_expired"), (_revoke, "token_revoked"), (_deactivate, "user_inactive")],
)
def test_expired_revoked_and_inactive_users_tokens_get_401_with_a_json_error(run, owner, make_unusable, code):
    token, raw = project_services.issue_token(owner, name="ci", scope="admin")
    client = bearer(raw)
    assert client.get(run_url(run)).status_code == 200
    make_unusable(token, raw)
    for response in (client.get(run_url(run)), batch(client, run, LOG), client.get("/api/v1/workspaces/")):
        body = error_of(response, 401)
        assert body["code"] == code
        assert token.prefix in body["message"] and raw not in body["message"]
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert not run.attributes.filter(path="parameters/lr").exists()


def test_a_made_up_token_gets_401_token_invalid(run, owner):
    _, raw = project_services.issue_token(owner, name="ci")
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert error_of(bearer(forged).get(run_url(run)), 401)["code"] == "token_invalid"


def test_a_read_token_reads_but_cannot_log_create_or_delete_runs(run, owner):
    _, raw = project_services.issue_token(owner, name="dashboard", scope="read")
    client = bearer(raw)
    assert client.get(run_url(run)).status_code == 200
    assert client.get("/api/v1/runs/", {"project": "acme/vision"}).json()["count"] == 1
    assert client.post("/api/v1/exports/", {"project": "acme/vision"}).status_code == 202  # export is a read
    error_of(batch(client, run, LOG), 403)
    error_of(client.post("/api/v1/runs/", {"project": "acme/vision", "name": "new"}), 403)
    error_of(client.delete(run_url(run)), 403)
    error_of(client.patch(run_url(run), {"name": "renamed"}), 403)
    error_of(client.post("/api/v1/workspaces/acme/projects/", {"slug": "other"}), 403)
    run.refresh_from_db()
    assert run.name == "baseline" and run.deleted_at is None
    assert list(Run.objects.values_list("name", flat=True)) == ["baseline"]
    assert not run.attributes.filter(path="parameters/lr").exists()
    # the same user with a write token may do all of it
    writer = bearer(project_services.issue_token(owner, name="trainer", scope="write")[1])
    assert batch(writer, run, LOG).status_code == 200
    assert writer.delete(run_url(run)).status_code == 204


def test_a_token_bound_to_another_workspace_finds_nothing_in_acme_and_works_in_its_own(run, owner):
    personal = project_services.ensure_personal_workspace(owner)
    _, raw = project_services.issue_token(owner, name="home", scope="admin", workspace=personal)
    client = bearer(raw)
    for response in (
        client.get(run_url(run)),
        batch(client, run, LOG),
        client.delete(run_url(run)),
        client.get("/api/v1/workspaces/acme/"),
        client.get("/api/v1/workspaces/acme/projects/vision/"),
        client.get("/api/v1/runs/", {"project": "acme/vision"}),
        client.post("/api/v1/runs/", {"project": "acme/vision", "name": "new"}),
        client.post("/api/v1/workspaces/acme/projects/", {"slug": "other"}),
        client.post("/api/v1/exports/", {"project": "acme/vision"}),
    ):
        assert error_of(response, 404)["code"] == "not_found"
    assert [w["slug"] for w in client.get("/api/v1/workspaces/").json()] == [personal.slug]
    assert client.get("/api/v1/runs/").json()["count"] == 0
    run.refresh_from_db()
    assert run.deleted_at is None and not run.attributes.filter(path="parameters/lr").exists()
    # its own workspace works: a run in a new project there, logged to
    created = client.post("/api/v1/runs/", {"project": f"{personal.slug}/home", "name": "mine"})
    assert created.status_code == 201, created.content
    mine = Run.objects.get(name="mine")
    assert batch(client, mine, LOG).status_code == 200
    assert client.get(run_url(mine)).status_code == 200


@pytest.fixture
def service_account(workspace, owner, project):
    account = project_services.create_service_account(workspace, "ci-bot", by=owner)
    project_services.set_project_role(project, account.user, "contributor", by=owner)
    return account


def test_a_service_accounts_token_works_on_the_api_but_never_signs_into_the_ui(run, owner, service_account):
    _, raw = project_services.issue_token(service_account.user, name="ci", scope="write", by=owner)
    assert bearer(raw).get(run_url(run)).status_code == 200
    assert batch(bearer(raw), run, LOG).status_code == 200
    browser = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for page in ("/", "/w/acme/", "/w/acme/vision/", f"/w/acme/vision/runs/{run.human_id}/", "/settings/tokens/"):
        response = browser.get(page)
        assert response.status_code == 302, (page, response.status_code)
        assert response["Location"].startswith("/accounts/login/"), (page, response["Location"])
    # the service account has no usable password: the login form refuses it, whatever is typed
    assert not service_account.user.has_usable_password()
    for password in ("", raw, "!"):
        response = Client().post("/accounts/login/", {"username": "ci-bot", "password": password})
        assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated
        assert "sessionid" not in response.cookies


@pytest.fixture
def root_client(db):
    root = User.objects.create_superuser("root", "root@example.com", "pw-root")
    client = Client()
    client.force_login(root)
    return client


def test_a_secret_never_appears_in_logs_admin_pages_or_the_audit_log(run, owner, root_client, caplog):
    caplog.set_level(logging.DEBUG)
    token, raw = project_services.issue_token(owner, name="ci", scope="write")
    secret = raw.split("_", 2)[2]
    client = bearer(raw)
    assert client.get(run_url(run)).status_code == 200
    assert batch(client, run, LOG).status_code == 200
    assert client.delete("/api/v1/runs/acme/vision/VIS-99/").status_code == 404
    read = bearer(project_services.issue_token(owner, name="read", scope="read")[1])
    assert batch(read, run, LOG, seq=2).status_code == 403
    pages = [
        root_client.get("/admin/accounts/apitoken/").content.decode(),
        root_client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode(),
        root_client.get("/admin/accounts/apitoken/", {"q": token.prefix}).content.decode(),
    ]
    project_services.revoke_token(token, by=owner)
    assert client.get(run_url(run)).status_code == 401  # a revoked token's use is audited
    expiring, expiring_raw = project_services.issue_token(owner, name="short", scope="read")
    ApiToken.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(expiring_raw).get(run_url(run)).status_code == 401
    pages.append(root_client.get("/admin/projects/auditevent/").content.decode())
    audit = [str(row) for row in AuditEvent.objects.values()]
    assert token.prefix in pages[0] and any(token.prefix in row for row in audit)  # the prefix is what is shown
    assert caplog.records  # the flow was logged (the refusals at least)
    for raw_value, part in ((raw, secret), (expiring_raw, expiring_raw.split("_", 2)[2])):
        assert part not in caplog.text and raw_value not in caplog.text
        assert not [page for page in pages if part in page]
        assert not [row for row in audit if part in row]


def test_only_an_unbound_write_or_admin_token_creates_a_workspace(owner, workspace):
    personal = project_services.ensure_personal_workspace(owner)
    refused = {
        "read": project_services.issue_token(owner, name="r", scope="read")[1],
        "bound": project_services.issue_token(owner, name="b", scope="admin", workspace=personal)[1],
        "bound to acme": project_services.issue_token(owner, name="a", scope="write", workspace=workspace)[1],
    }
    for kind, raw in refused.items():
        body = error_of(bearer(raw).post("/api/v1/workspaces/", {"slug": f"new-{kind.replace(' ', '-')}"}), 403)
        assert "token" in body["message"], (kind, body)
    assert not Workspace.objects.filter(slug__startswith="new-").exists()
    for scope in ("write", "admin"):
        raw = project_services.issue_token(owner, name=scope, scope=scope)[1]
        assert bearer(raw).post("/api/v1/workspaces/", {"slug": f"new-{scope}"}).status_code == 201
