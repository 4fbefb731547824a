import pytest

from runs import services

from .conftest import batch


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def test_login_page_and_login(client, owner):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "owner", "password": "pw-owner"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_run_list_shows_runs_with_bounded_queries(browser, project, owner, owner_api, django_assert_max_num_queries):
    for index in range(60):
        services.create_run(owner, project, name=f"run-{index}", tags=["t"])
    with django_assert_max_num_queries(12):
        response = browser.get("/w/acme/vision/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "run-59" in html and "run-10" in html and "run-9<" not in html
    assert "page 1 of 2" in html
    fragment = browser.get("/w/acme/vision/?page=2", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode() and "run-5" in fragment.content.decode()


def test_run_page_lists_fields_and_filters_them(browser, run, owner_api):
    batch(owner_api, run, [
        {"op": "assign", "path": "parameters/lr", "value": 0.01},
        {"op": "append", "path": "train/loss", "values": [1.0, 0.5]},
    ])
    html = browser.get(f"/w/acme/vision/runs/{run.human_id}/").content.decode()
    assert "parameters/lr" in html and "0.01" in html and "train/loss" in html and "sys/id" in html
    fragment = browser.get(f"/w/acme/vision/runs/{run.human_id}/?q=lr", HTTP_HX_REQUEST="true").content.decode()
    assert "parameters/lr" in fragment and "train/loss" not in fragment and "<html" not in fragment


def test_workspace_pages(browser, project):
    assert "acme/vision" in browser.get("/").content.decode()
    page = browser.get("/w/acme/").content.decode()
    assert "acme/vision" in page and "contributor" in page


def test_unknown_run_is_404(browser, project):
    assert browser.get("/w/acme/vision/runs/VIS-999/").status_code == 404
    assert browser.get("/w/acme/vision/runs/XYZ-1/").status_code == 404


def test_admin_lists_every_model(client, db):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", "r@x.org", "pw")
    client.force_login(admin)
    for url in ("/admin/runs/run/", "/admin/runs/attribute/", "/admin/runs/blob/", "/admin/projects/workspace/",
                "/admin/projects/project/", "/admin/projects/membership/", "/admin/accounts/apitoken/", "/admin/runs/runbatch/"):
        assert client.get(url).status_code == 200, url
