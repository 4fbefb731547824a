"""The model registry's pages: the workspace's model list, a model's page with its versions and
the stage change form (HTMX), and who sees and may use what."""

import pytest
from django.test import Client

from projects.models import AuditEvent
from runs.registry import services as registry
from runs.registry.models import ModelVersion

from .test_registry import local_blobs, log_files  # noqa: F401  (fixture)

LIST = "/w/acme/-/models"
PAGE = LIST + "/resnet"


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def registered(owner, run, local_blobs):  # noqa: F811
    log_files(owner, run)
    registry.register_version(owner, run, "model/weights", "resnet", stage="production")
    registry.register_version(owner, run, "model/dir", "resnet", stage="staging", description="with tokenizer")
    return run


def test_members_see_the_model_list_and_page_with_stages_runs_and_metrics(viewer, registered):
    listing = ui(viewer).get(LIST)
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "registry/resnet" in html and 'class="stage stage-production">v1' in html and 'stage-staging">v2' in html
    page = ui(viewer).get(PAGE).content.decode()
    assert 'data-version="2" data-stage="staging"' in page and 'data-version="1" data-stage="production"' in page
    assert f"/w/acme/vision/runs/{registered.human_id}" in page and "eval/acc" in page and "0.93" in page
    assert "/api/v1/workspaces/acme/models/resnet/stages/production/download" in page
    assert "registry-stage-form" not in page  # a viewer may not change stages: no form


def test_a_writer_promotes_with_the_htmx_form_and_gets_the_versions_table(contributor, registered):
    client = ui(contributor)
    assert "registry-stage-form" in client.get(PAGE).content.decode()
    response = client.post(
        PAGE + "/versions/2/stage", {"stage": "production", "archive_existing": "on"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="versions">')
    assert 'data-version="2" data-stage="production"' in html and 'data-version="1" data-stage="archived"' in html
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {1: "archived", 2: "production"}
    assert AuditEvent.objects.filter(action="model_version.stage_changed", actor=contributor).count() == 2


def test_a_bad_stage_is_shown_in_the_table_and_changes_nothing(contributor, registered):
    response = ui(contributor).post(PAGE + "/versions/2/stage", {"stage": "live"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "is not a stage" in response.content.decode()
    assert ModelVersion.objects.get(version=2).stage == "staging"


def test_without_htmx_the_form_redirects_to_the_model_page(contributor, registered):
    response = ui(contributor).post(PAGE + "/versions/1/stage", {"stage": "archived"})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert ModelVersion.objects.get(version=1).stage == "archived"


def test_viewers_may_not_change_stages_and_strangers_see_nothing(viewer, stranger, registered):
    assert ui(viewer).post(PAGE + "/versions/1/stage", {"stage": "archived"}).status_code == 403
    assert ui(stranger).get(LIST).status_code == 404
    assert ui(stranger).get(PAGE).status_code == 404
    assert ui(stranger).post(PAGE + "/versions/1/stage", {"stage": "archived"}).status_code == 404
    assert ModelVersion.objects.get(version=1).stage == "production"


def test_the_model_page_takes_a_fixed_number_of_queries(owner, registered, django_assert_max_num_queries):
    for _ in range(5):
        registry.register_version(owner, registered, "model/weights", "resnet")
    client = ui(owner)
    with django_assert_max_num_queries(20):
        assert client.get(PAGE).status_code == 200
    with django_assert_max_num_queries(20):
        assert client.get(LIST).status_code == 200
