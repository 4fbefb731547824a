"""Authentication: throttled UI logins, password change and reset, API tokens (scope, expiry,
revocation, last use, secrets kept out of logs and admin) and the per-request context."""

import importlib
import logging
import re
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken
from accounts.signals import token_issued, token_refused, token_revoked
from tracker import context

from .test_security_headers import inline_code

LOGIN = "/accounts/login/"
API = "/api/v1/workspaces/"


def login(username, password, address):
    return Client().post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def bearer(raw, **extra):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}", **extra)
    return client


@pytest.fixture
def received():
    """Every accounts signal sent during the test, as (signal name, kwargs, request context then)."""
    seen = []

    def receiver_for(name):
        def receive(sender, **kwargs):
            kwargs.pop("signal")
            seen.append((name, kwargs, context.current()))

        return receive

    receivers = {name: receiver_for(name) for name in ("issued", "revoked", "refused")}
    token_issued.connect(receivers["issued"])
    token_revoked.connect(receivers["revoked"])
    token_refused.connect(receivers["refused"])
    yield seen
    token_issued.disconnect(receivers["issued"])
    token_revoked.disconnect(receivers["revoked"])
    token_refused.disconnect(receivers["refused"])


# ---- throttled UI login -------------------------------------------------------


def assert_locked_out(response):
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()


def test_an_account_is_locked_after_the_failure_limit_from_any_address_even_with_the_right_password(owner, viewer):
    limit = settings.AXES_FAILURE_LIMIT
    for attempt in range(limit - 1):
        refused = login("owner", "wrong", f"10.0.0.{attempt + 1}")
        assert refused.status_code == 200 and "didn't match" in refused.content.decode()
    assert_locked_out(login("owner", "wrong", "10.0.0.99"))

    right_password = login("owner", "pw-owner", "10.9.9.9")
    assert_locked_out(right_password)
    assert "_auth_user_id" not in right_password.wsgi_request.session
    # another account, from another address, logs in as usual
    assert login("viewer", "pw-viewer", "10.8.8.8").status_code == 302


def test_an_address_is_locked_after_the_failure_limit_across_accounts(owner, viewer):
    limit = settings.AXES_FAILURE_LIMIT
    for attempt in range(limit - 1):
        assert login(f"guess{attempt}", "wrong", "192.0.2.10").status_code == 200
    assert_locked_out(login("viewer", "wrong", "192.0.2.10"))

    assert_locked_out(login("owner", "pw-owner", "192.0.2.10"))
    assert login("owner", "pw-owner", "192.0.2.11").status_code == 302


def test_the_admin_login_is_throttled_too(db):
    User.objects.create_superuser("root", "root@example.org", "pw-root")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = Client().post("/admin/login/", {"username": "root", "password": "wrong"}, REMOTE_ADDR="198.51.100.1")
    assert_locked_out(response)
    right = Client().post("/admin/login/", {"username": "root", "password": "pw-root"}, REMOTE_ADDR="198.51.100.2")
    assert_locked_out(right)


def test_a_lockout_ends_after_the_cool_off(owner):
    from axes.models import AccessAttempt

    for attempt in range(settings.AXES_FAILURE_LIMIT):
        login("owner", "wrong", f"10.0.0.{attempt + 1}")
    assert_locked_out(login("owner", "pw-owner", "10.0.1.1"))
    # the clock moves past the cool-off since the last attempt
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert login("owner", "pw-owner", "10.0.1.1").status_code == 302


def test_a_locked_out_address_keeps_using_api_tokens(owner):
    _, raw = ApiToken.issue(owner, name="ci")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        login(f"guess{attempt}", "wrong", "192.0.2.20")
    assert_locked_out(login("owner", "pw-owner", "192.0.2.20"))
    assert bearer(raw, REMOTE_ADDR="192.0.2.20").get(API).status_code == 200


def test_client_login_in_code_without_a_request_still_works(owner):
    client = Client()
    assert client.login(username="owner", password="pw-owner")
    assert client.get("/").status_code == 200


# ---- password change and reset ------------------------------------------------

NEW_PASSWORD = "correct-horse-battery-staple-42"


def test_pages_link_password_change_and_reset(client, owner):
    assert 'href="/accounts/password/reset/"' in client.get(LOGIN).content.decode()
    client.force_login(owner)
    assert 'href="/accounts/password/change/"' in client.get("/").content.decode()


def test_password_change_needs_the_old_password_and_keeps_the_session(client, owner):
    assert client.get("/accounts/password/change/").status_code == 302  # anonymous: to the login page
    client.force_login(owner)
    page = client.get("/accounts/password/change/")
    assert page.status_code == 200 and 'name="old_password"' in page.content.decode()

    wrong = client.post(
        "/accounts/password/change/",
        {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert wrong.status_code == 200 and 'class="error"' in wrong.content.decode()
    owner.refresh_from_db()
    assert owner.check_password("pw-owner")

    changed = client.post(
        "/accounts/password/change/",
        {"old_password": "pw-owner", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302 and changed["Location"] == "/accounts/password/change/done/"
    assert client.get(changed["Location"]).status_code == 200
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert client.get("/").status_code == 200  # still logged in
    assert login("owner", NEW_PASSWORD, "10.0.0.1").status_code == 302


def test_password_reset_mails_a_link_that_sets_a_new_password_once(client, owner, mailoutbox):
    owner.email = "owner@example.org"
    owner.save()
    assert client.get("/accounts/password/reset/").status_code == 200
    sent = client.post("/accounts/password/reset/", {"email": "owner@example.org"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password/reset/sent/"
    assert client.get(sent["Location"]).status_code == 200

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["owner@example.org"] and mail.from_email == settings.DEFAULT_FROM_EMAIL
    assert "owner" in mail.body
    link = re.search(r"http://testserver(/accounts/password/reset/[^/\s]+/[^/\s]+/)", mail.body).group(1)

    form_url = client.get(link)["Location"]  # Django moves the token into the session
    form = client.get(form_url)
    assert form.status_code == 200 and 'name="new_password1"' in form.content.decode()
    done = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"
    assert client.get(done["Location"]).status_code == 200
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert login("owner", NEW_PASSWORD, "10.0.0.1").status_code == 302

    used = Client().get(link, follow=True)
    assert "not valid" in used.content.decode()


def test_password_and_lockout_pages_need_no_inline_script_or_style(client, owner):
    pages = {"reset": client.get("/accounts/password/reset/"), "locked out": None}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        pages["locked out"] = client.post(LOGIN, {"username": "owner", "password": "wrong"})
    client.force_login(owner)
    pages["change"] = client.get("/accounts/password/change/")
    for name, response in pages.items():
        assert response.status_code in (200, 429), name
        assert inline_code(response.content.decode()) == [], name
        assert "script-src 'self'" in response["Content-Security-Policy"], name


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client, owner, mailoutbox):
    sent = client.post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password/reset/sent/"
    assert mailoutbox == []


# ---- API tokens ------------------------------------------------------------------


def error_of(response):
    assert response["Content-Type"].startswith("application/json")
    return response.json()["error"]


def test_issue_token_stores_the_scope_and_announces_it(owner, received):
    token, raw = services.issue_token(owner, name="ci", scope="read", by=owner)
    token.refresh_from_db()
    assert token.scope == "read" and raw.startswith(token.prefix + "_")
    assert token.prefix == f"rs_{token.lookup}"
    assert [(name, kwargs) for name, kwargs, _ in received] == [("issued", {"token": token, "by": owner})]
    assert bearer(raw).get(API).status_code == 200


def test_issue_token_refuses_an_unknown_scope_or_a_past_expiry_naming_the_field(owner, received):
    with pytest.raises(ValidationError) as bad_scope:
        services.issue_token(owner, name="ci", scope="root")
    assert "scope" in bad_scope.value.message_dict
    with pytest.raises(ValidationError) as past:
        services.issue_token(owner, name="ci", scope="read", expires_at=timezone.now() - timedelta(days=1))
    assert "expires_at" in past.value.message_dict
    assert ApiToken.objects.count() == 0 and received == []


def test_tokens_made_the_old_way_keep_every_right(owner):
    token, _ = ApiToken.issue(owner, name="test")
    assert token.scope == "admin"
    assert ApiToken._meta.get_field("scope").default == "write"


def test_the_migration_gives_tokens_made_before_scopes_the_admin_scope(owner):
    migration = importlib.import_module("accounts.migrations.0003_existing_tokens_keep_admin_scope")
    before, _ = ApiToken.issue(owner, name="old", scope="write")  # as 0002 left every existing token
    migration.existing_tokens_admin(django_apps, None)
    before.refresh_from_db()
    assert before.scope == "admin"


def test_createtoken_issues_through_the_service_with_scope_and_expiry(owner, received, capsys):
    call_command("createtoken", "owner", "--name", "ci", "--scope", "read", "--expires-in-days", "7")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.find(raw)
    assert token.scope == "read" and token.name == "ci"
    assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)
    assert [(name, kwargs) for name, kwargs, _ in received] == [("issued", {"token": token, "by": None})]
    with pytest.raises(CommandError, match="expires-in-days"):
        call_command("createtoken", "owner", "--expires-in-days", "0")


def test_an_expired_token_gets_401_and_is_announced_as_refused(owner, received):
    token, raw = services.issue_token(owner, name="ci", scope="write", expires_at=timezone.now() + timedelta(days=1))
    assert bearer(raw).get(API).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))  # time passes

    response = bearer(raw, HTTP_USER_AGENT="ci-bot/1.0").get(API)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    error = error_of(response)
    assert error["status"] == 401 and error["code"] == "token_expired"
    assert "Authorization" in error["message"] and token.prefix in error["message"] and "expired" in error["message"]
    refused = [(kwargs, ctx) for name, kwargs, ctx in received if name == "refused"]
    assert [kwargs for kwargs, _ in refused] == [{"token": token, "reason": "expired"}]
    assert refused[0][1].token_prefix == token.prefix and refused[0][1].user_agent == "ci-bot/1.0"


def test_a_revoked_token_gets_401_and_is_announced_as_refused(owner, received):
    token, raw = services.issue_token(owner, name="ci", scope="write")
    assert services.revoke_token(token, by=owner) is True
    assert services.revoke_token(token, by=owner) is False  # once
    token.refresh_from_db()
    assert token.revoked_at is not None

    response = bearer(raw).get(API)
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "token_revoked" and token.prefix in error["message"]
    assert [(name, kwargs) for name, kwargs, _ in received] == [
        ("issued", {"token": token, "by": None}),
        ("revoked", {"token": token, "by": owner}),
        ("refused", {"token": token, "reason": "revoked"}),
    ]


def test_a_token_of_an_inactive_user_gets_401_without_a_refusal_event(owner, received):
    _, raw = services.issue_token(owner, name="ci", scope="admin")
    owner.is_active = False
    owner.save()
    response = bearer(raw).get(API)
    assert response.status_code == 401 and error_of(response)["code"] == "user_inactive"
    assert [name for name, _, _ in received] == ["issued"]


def test_a_wrong_secret_for_a_real_prefix_is_invalid_and_announces_nothing(owner, received):
    token, raw = services.issue_token(owner, name="ci", scope="admin")
    services.revoke_token(token, by=owner)
    forged = f"{token.prefix}_{'x' * 43}"
    response = bearer(forged).get(API)
    assert response.status_code == 401 and error_of(response)["code"] == "token_invalid"
    assert [name for name, _, _ in received] == ["issued", "revoked"]


def test_last_use_records_time_and_address_at_most_once_a_minute(owner):
    token, raw = services.issue_token(owner, name="ci", scope="write")
    assert token.last_used_at is None and token.last_used_ip is None
    assert bearer(raw, REMOTE_ADDR="203.0.113.5").get(API).status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and token.last_used_ip == "203.0.113.5"

    assert bearer(raw, REMOTE_ADDR="203.0.113.6").get(API).status_code == 200
    token.refresh_from_db()
    assert (token.last_used_at, token.last_used_ip) == (first, "203.0.113.5")

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))  # time passes
    assert bearer(raw, REMOTE_ADDR="203.0.113.6").get(API).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at > first and token.last_used_ip == "203.0.113.6"


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(owner, settings):
    token, raw = services.issue_token(owner, name="ci", scope="write")
    spoofed = {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}
    assert bearer(raw, **spoofed).get(API).status_code == 200
    token.refresh_from_db()
    assert token.last_used_ip == "198.51.100.7"

    settings.RUNSTORE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=None)
    proxied = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.9, 10.0.0.5"}
    assert bearer(raw, **proxied).get(API).status_code == 200
    token.refresh_from_db()
    assert token.last_used_ip == "203.0.113.9"  # the nearest address no trusted proxy holds


def test_the_secret_never_reaches_the_logs(owner, caplog):
    caplog.set_level(logging.DEBUG)
    token, raw = services.issue_token(owner, name="ci", scope="write", by=owner)
    assert bearer(raw).get(API).status_code == 200
    services.revoke_token(token, by=owner)
    assert bearer(raw).get(API).status_code == 401
    secret = raw.removeprefix(token.prefix + "_")
    assert caplog.records  # something was logged (the 401 at least)
    assert secret not in caplog.text and raw not in caplog.text
    assert secret not in str(token) and secret not in repr(token)


# ---- tokens in the admin -----------------------------------------------------------


@pytest.fixture
def root_client(db):
    root = User.objects.create_superuser("root", "root@example.org", "pw-root")
    client = Client()
    client.force_login(root)
    client.root = root
    return client


def test_admin_shows_a_new_secret_once_and_never_again(root_client, owner, received, caplog):
    caplog.set_level(logging.DEBUG)
    created = root_client.post(
        "/admin/accounts/apitoken/add/",
        {"user": owner.pk, "name": "pipeline", "scope": "read", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )
    assert created.status_code == 200
    token = ApiToken.objects.get()
    assert token.scope == "read" and token.user == owner
    shown = re.search(r"rs_[0-9a-f]+_[A-Za-z0-9_-]+", created.content.decode()).group(0)
    assert ApiToken.find(shown) == token
    assert [(name, kwargs) for name, kwargs, _ in received] == [("issued", {"token": token, "by": root_client.root})]

    secret = shown.removeprefix(token.prefix + "_")
    change = root_client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    listing = root_client.get("/admin/accounts/apitoken/").content.decode()
    for page in (change, listing):
        assert secret not in page and token.digest not in page
    assert token.prefix in listing and token.prefix in change
    assert secret not in caplog.text


def test_admin_revokes_selected_tokens_through_the_service(root_client, owner, received):
    keep, _ = ApiToken.issue(owner, name="keep")
    gone, raw = ApiToken.issue(owner, name="gone")
    response = root_client.post(
        "/admin/accounts/apitoken/", {"action": "revoke_selected", "_selected_action": [gone.pk]}, follow=True
    )
    assert response.status_code == 200 and "1 token(s) revoked" in response.content.decode()
    gone.refresh_from_db()
    keep.refresh_from_db()
    assert gone.revoked_at is not None and keep.revoked_at is None
    assert [(name, kwargs) for name, kwargs, _ in received] == [("revoked", {"token": gone, "by": root_client.root})]
    assert bearer(raw).get(API).status_code == 401


def test_admin_cannot_change_a_tokens_owner_scope_or_digest(root_client, owner, stranger):
    token, raw = ApiToken.issue(owner, name="ci", scope="read")
    root_client.post(
        f"/admin/accounts/apitoken/{token.pk}/change/",
        {"user": stranger.pk, "name": "renamed", "scope": "admin", "digest": "0" * 64, "lookup": "abc"},
    )
    token.refresh_from_db()
    assert (token.user, token.scope, token.name) == (owner, "read", "renamed")
    assert ApiToken.find(raw) == token


def test_admin_token_filters_and_search(root_client, owner, viewer):
    read, _ = ApiToken.issue(owner, name="reader", scope="read")
    old, _ = ApiToken.issue(owner, name="old", scope="write", expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = ApiToken.issue(viewer, name="revoked", scope="write")
    services.revoke_token(revoked, by=None)

    def names(query):
        page = root_client.get(f"/admin/accounts/apitoken/?{query}")
        assert page.status_code == 200
        return {t.name for t in page.context["cl"].result_list}

    assert names("scope__exact=read") == {"reader"}
    assert names("revoked=yes") == {"revoked"}
    assert names("revoked=no") == {"reader", "old"}
    assert names("expired=yes") == {"old"}
    assert names("expired=no") == {"reader", "revoked"}
    assert names(f"q={read.prefix}") == {"reader"}
    assert names("q=viewer") == {"revoked"}


# ---- request context ------------------------------------------------------------------


def test_request_id_is_echoed_when_safe_and_made_up_otherwise(client, owner):
    assert client.get(LOGIN, HTTP_X_REQUEST_ID="build-42.7")["X-Request-ID"] == "build-42.7"
    for unsafe in ("<script>", "x" * 200, "a b"):
        made_up = client.get(LOGIN, HTTP_X_REQUEST_ID=unsafe)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_up)
    first, second = client.get(LOGIN)["X-Request-ID"], client.get(LOGIN)["X-Request-ID"]
    assert first != second
    # on API errors too
    assert bearer("rs_nope_nope", HTTP_X_REQUEST_ID="abc").get(API)["X-Request-ID"] == "abc"


def test_the_request_context_reaches_receivers_and_is_empty_outside_a_request(owner, received):
    token, raw = services.issue_token(owner, name="ci", scope="write")
    services.revoke_token(token, by=owner)
    assert context.current() == context.RequestContext()
    bearer(raw, HTTP_USER_AGENT="u" * 500, HTTP_X_REQUEST_ID="req-1", REMOTE_ADDR="192.0.2.44").get(API)
    (ctx,) = [ctx for name, _, ctx in received if name == "refused"]
    assert ctx == context.RequestContext(
        address="192.0.2.44", user_agent="u" * 300, request_id="req-1", token_prefix=token.prefix
    )
    assert context.current() == context.RequestContext()
    # outside a request the issue and revoke events carry an empty context
    assert all(ctx == context.RequestContext() for name, _, ctx in received if name != "refused")
