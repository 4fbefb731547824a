"""The run table's pages over HTTP: comparing a selection, an invalid filter."""

import pytest
from django.test import Client

from runs import services as run_services

pytestmark = pytest.mark.django_db


def ui_client(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def three_runs(project, owner, run):
    more = [run_services.create_run(owner, project, name=f"r{i}")[0] for i in range(2)]
    return [run, *more]


def test_compare_selected_posts_and_redirects_to_a_url_without_the_csrf_token(viewer, project, three_runs):
    client = ui_client(viewer)
    table_url = "/w/acme/vision/"
    page = client.get(table_url).content.decode()
    # the button posts the selection; it never turns the POST form (and its token) into a GET
    assert 'formmethod="post" id="compare-btn"' in page
    assert 'formmethod="get" id="compare-btn"' not in page
    token = client.cookies["csrftoken"].value
    ids = [r.human_id for r in three_runs]
    response = client.post(
        "/w/acme/vision/compare", {"csrfmiddlewaretoken": token, "runs": ids, "tag": "", "action": ""}
    )
    assert response.status_code == 302
    assert response["Location"] == "/w/acme/vision/compare?runs=" + ",".join(ids)
    followed = client.get(response["Location"])
    assert followed.status_code == 200
    for run in three_runs:
        assert run.human_id in followed.content.decode()


def test_compare_selected_without_a_selection_goes_back_to_the_table(viewer, project, run):
    client = ui_client(viewer)
    client.get("/w/acme/vision/")
    response = client.post("/w/acme/vision/compare", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 302
    assert response["Location"] == "/w/acme/vision/"


def test_compare_post_of_a_project_the_user_cannot_see_is_404(stranger, project, run):
    client = ui_client(stranger)
    client.get("/accounts/login/")
    response = client.post(
        "/w/acme/vision/compare", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "runs": [run.human_id]}
    )
    assert response.status_code == 404


def test_an_invalid_query_shows_its_error_over_an_empty_table_not_the_unfiltered_runs(viewer, project, three_runs):
    client = ui_client(viewer)
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = client.get("/w/acme/vision/", {"q": "parameters/lr >"}, **headers)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="query-error"' in html and "at character 15" in html
        assert 'id="runs-grid"' in html
        for run in three_runs:
            assert f'value="{run.human_id}"' not in html  # no row of any run
        assert "No runs are shown until the error above is fixed." in html
        assert "no runs: the filter has an error" in html and "<strong>3</strong>" not in html
    count = client.get("/w/acme/vision/", {"q": "parameters/lr >", "fragment": "count"}).content.decode()
    assert "the filter has an error" in count and "<strong>3</strong>" not in count
    # the same table with a valid filter shows the runs and their count
    html = client.get("/w/acme/vision/", {"q": 'sys/name != "nothing"'}).content.decode()
    assert all(f'value="{run.human_id}"' in html for run in three_runs)
