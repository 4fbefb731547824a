"""The team pages in a real browser: a token made and shown once, a member invited and promoted,
and a viewer who is offered no write control; each page under the CSP with no violation."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import Membership, ProjectRole
from runs import services

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
def world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    django_user_model.objects.create_user("alice", email="Alice@example.org", password="pw-alice")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(project, viewer, ProjectRole.VIEWER, by=owner)
    services.create_run(owner, project, name="baseline")
    return workspace


@pytest.fixture
def watched(page):
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def check(where):
        problems.extend(f"{where}: {v}" for v in page.evaluate("window.__cspViolations || []"))
        assert not problems, problems

    return page, check


def test_a_user_creates_a_token_and_sees_it_once(watched, live_server, world, screenshot):
    page, check = watched
    login(page, live_server, "viewer")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    page.fill("#id_name", "laptop")
    page.select_option("#id_scope", "read")
    page.select_option("#id_expires", "30")
    with page.expect_response(lambda r: r.request.method == "POST") as created:
        page.get_by_role("button", name="Create token").click()
    assert "no-store" in created.value.headers["cache-control"]
    secret = page.locator("#new-token-secret").inner_text()
    token = ApiToken.find(secret)
    assert token is not None and token.name == "laptop" and token.scope == "read"
    expect(page.locator("table[aria-label='API tokens']")).to_contain_text(token.prefix)
    screenshot(page, "team-token-created")
    check("token created")

    # the secret is gone on the next visit; the token is listed by its prefix only
    page.goto(f"{live_server.url}/settings/tokens/")
    expect(page.locator("#new-token-secret")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator("table[aria-label='API tokens']")).to_contain_text("active")

    # revoke it, after a confirmation
    page.get_by_role("link", name="revoke").click()
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("table[aria-label='API tokens']")).to_contain_text("revoked")
    check("token revoked")


def test_an_owner_invites_a_member_and_changes_their_role(watched, live_server, world, screenshot):
    page, check = watched
    login(page, live_server, "owner")
    page.goto(f"{live_server.url}/w/acme/")
    expect(page.locator("#usage")).to_contain_text("Storage")
    page.locator("nav.tabs").get_by_role("link", name="Members").click()

    # nobody has this address: a clear error, no account made
    page.fill("#invite-form input[name=member]", "nobody@example.org")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#invite-form .error")).to_contain_text("no user has the username or email")

    page.fill("#invite-form input[name=member]", "alice@example.org")
    page.select_option("#invite-form select[name=role]", "member")
    page.get_by_role("button", name="Add member").click()
    row = page.locator("tr[data-member='alice']")
    expect(row).to_be_visible()
    expect(row.locator("select")).to_have_value("member")

    row.locator("select").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(page.locator(".flash")).to_contain_text("alice is now admin")
    expect(page.locator("tr[data-member='alice'] select")).to_have_value("admin")
    assert Membership.objects.get(workspace=world, user__username="alice").role == "admin"

    # the last owner cannot step down; the page says why
    owner_row = page.locator("tr[data-member='owner']")
    owner_row.locator("select").select_option("member")
    owner_row.get_by_role("button", name="Change role").click()
    expect(page.locator("p.error")).to_contain_text("last owner")
    screenshot(page, "team-members")
    check("members")


def test_a_viewer_sees_no_write_controls(watched, live_server, world, screenshot):
    page, check = watched
    login(page, live_server, "viewer")
    page.goto(f"{live_server.url}/w/acme/vision/")
    expect(page.locator("#runs-grid tbody tr[data-url]")).to_have_count(1)
    expect(page.locator("button[value=delete]")).to_have_count(0)
    expect(page.locator("button[value=tag]")).to_have_count(0)
    expect(page.locator(".page-head").get_by_role("link", name="Settings")).to_have_count(0)

    page.locator(".page-head").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members of acme/vision")).to_be_visible()
    expect(page.locator("table[aria-label='Project members']")).to_contain_text("viewer")
    expect(page.locator("#grant-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Change role")).to_have_count(0)
    expect(page.get_by_role("link", name="remove")).to_have_count(0)

    response = page.goto(f"{live_server.url}/w/acme/vision/settings")
    assert response.status == 403

    page.goto(f"{live_server.url}/w/acme/")
    expect(page.locator("#new-project")).to_have_count(0)
    # a guest of one project learns the workspace exists, not who is in it: no members link, a 403 page
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    response = page.goto(f"{live_server.url}/w/acme/-/members")
    assert response.status == 403
    expect(page.locator("table[aria-label='Members']")).to_have_count(0)
    expect(page.locator("#invite-form")).to_have_count(0)
    screenshot(page, "team-viewer-members")
    check("viewer pages")
