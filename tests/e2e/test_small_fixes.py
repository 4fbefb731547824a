"""Small things a user trips over: adding a column keeps the URL's columns once each, a failed login
keeps the user name, a sub-second run has a duration, and the 404 page is styled with a way back."""

import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from projects import services as project_services
from runs import services
from runs.models import Run

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = services.create_run(owner, project, name="quick")
    services.apply_batch(owner, run, stream="s", seq=0, raw_ops=[{"op": "assign", "path": "eval/acc", "value": 0.9}])
    services.update_run(owner, run, state="finished")
    created = timezone.now() - timezone.timedelta(seconds=10)
    Run.objects.filter(pk=run.pk).update(created_at=created, finished_at=created + timezone.timedelta(seconds=0.95))
    return project


def test_adding_a_column_lists_each_column_once_in_the_url(page, live_server, project):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/")
    page.click("#columns-menu summary")
    page.fill("input[name=path_q]", "eval")
    page.locator("#column-list a", has_text="eval/acc").first.click()
    expect(page.locator("#runs-grid thead th[data-path='eval/acc']")).to_have_count(1)
    columns = parse_qs(urlparse(page.url).query)["c"]
    assert len(columns) == len(set(columns)), columns
    assert columns[-1] == "eval/acc"
    page.reload()
    expect(page.locator("#runs-grid thead th[data-path]")).to_have_count(len(columns))


def test_a_failed_login_keeps_the_user_name(page, live_server, project):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_be_visible()
    expect(page.locator("input[name=username]")).to_have_value("owner")
    expect(page.locator("input[name=password]")).to_be_focused()


def test_a_sub_second_run_shows_its_duration(page, live_server, project):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    expect(page.locator("#run-header .facts div", has_text="Duration").locator("dd")).to_have_text("0.95s")
    page.goto(f"{live_server.url}/w/acme/vision/?c=sys/id&c=sys/running_time")
    expect(page.locator("#runs-grid tbody tr[data-url] td").last).to_have_text("0.95s")


def test_the_404_page_is_styled_and_leads_back(page, live_server, project, screenshot):
    login(page, live_server)
    response = page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-99/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    # the site's stylesheet applies: the page has the header bar and a card, not browser defaults
    assert page.locator("link[rel=stylesheet][href*='runstore/app.css']").count() == 1
    assert page.locator("section.card").evaluate("el => getComputedStyle(el).borderStyle") != "none"
    screenshot(page, "not-found")
    page.get_by_role("link", name=re.compile("Back")).click()
    expect(page.locator("h1")).not_to_have_text("Not found")
