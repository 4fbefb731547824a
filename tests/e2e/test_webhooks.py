"""The webhook pages in a real browser: a project owner adds a webhook, sends a test ping to a local
receiver and sees the signed delivery in the log; light, dark and phone layouts under the CSP."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from runs.webhooks.models import Delivery

from .test_browser import login
from .test_team_admin import RECORD_VIOLATIONS

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def receiver():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager(settings):
    from tracker.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield
    app.conf.task_always_eager = before


def test_an_owner_adds_a_webhook_pings_it_and_sees_the_delivery(
    page, browser, live_server, django_user_model, receiver, eager, screenshot
):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project_services.create_project(owner, workspace, "vision", key="VIS")
    url, seen = receiver
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    login(page, live_server, "owner")
    page.goto(f"{live_server.url}/w/acme/vision/settings")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks of acme/vision")).to_be_visible()
    page.fill("#id_url", "http://10.0.0.1/hook")
    page.get_by_label("Run finished").check()
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator(".errorlist, .error").first).to_contain_text("url:")

    page.fill("#id_url", url)
    page.get_by_label("Run finished").check()
    page.get_by_label("Run failed").check()
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("heading", name=f"Webhook {url}")).to_be_visible()
    page.get_by_role("button", name="Send a test ping").click()
    log = page.locator("table[aria-label='Deliveries']")
    delivery = Delivery.objects.get()
    row = log.locator(f"tr[data-delivery='{delivery.delivery_id}']")
    expect(row).to_contain_text("ping")
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("200")
    expect(row).to_contain_text('{"ok": true}')
    assert len(seen) == 1 and seen[0] == delivery.payload.encode()

    problems.extend(page.evaluate("window.__cspViolations || []"))
    assert not problems, problems
    detail = page.url
    screenshot(page, "webhooks-light")
    for scheme, viewport, name in [
        ("dark", {"width": 1400, "height": 900}, "webhooks-dark"),
        ("light", PHONE, "webhooks-390"),
    ]:
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        other = context.new_page()
        login(other, live_server, "owner")
        other.goto(detail)
        expect(other.locator("table[aria-label='Deliveries']")).to_contain_text("succeeded")
        if viewport is PHONE:
            assert other.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(other, name)
        context.close()
