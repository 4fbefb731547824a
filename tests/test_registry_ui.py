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


REGISTER = LIST + "/-/register"


def run_page(run) -> str:
    return f"/w/acme/vision/runs/{run.human_id}/"


def test_a_writer_registers_a_file_field_from_the_run_page(contributor, run, local_blobs):  # noqa: F811
    log_files(contributor, run)
    client = ui(contributor)
    page = client.get(run_page(run)).content.decode()
    assert "Register as a model version" in page and 'value="model/weights"' in page and 'value="model/dir"' in page
    response = client.post(
        REGISTER, {"run": str(run.uuid), "path": "model/dir", "name": "resnet", "stage": "staging", "description": "d"}
    )
    assert response.status_code == 302 and response["Location"] == PAGE
    version = ModelVersion.objects.get(model__name="resnet")
    assert (version.version, version.field_path, version.stage, version.description) == (1, "model/dir", "staging", "d")
    assert version.created_by == contributor
    assert "as version 1" in client.get(PAGE).content.decode()


def test_registering_a_field_that_is_not_a_file_goes_back_to_the_run_page_saying_why(
    contributor,
    run,
    local_blobs,  # noqa: F811
):
    log_files(contributor, run)
    client = ui(contributor)
    response = client.post(REGISTER, {"run": str(run.uuid), "path": "eval/acc", "name": "resnet"})
    assert response.status_code == 302 and response["Location"] == run_page(run) + "#files"
    assert "only a file or a file set can be registered" in client.get(run_page(run)).content.decode()
    assert not ModelVersion.objects.exists()


def test_a_viewer_sees_no_register_form_and_may_not_register(viewer, owner, run, local_blobs):  # noqa: F811
    log_files(owner, run)
    client = ui(viewer)
    assert "Register as a model version" not in client.get(run_page(run)).content.decode()
    response = client.post(REGISTER, {"run": str(run.uuid), "path": "model/weights", "name": "resnet"})
    assert response.status_code == 403 and not ModelVersion.objects.exists()


def test_a_stranger_cannot_find_the_run_to_register(stranger, owner, run, local_blobs):  # noqa: F811
    log_files(owner, run)
    response = ui(stranger).post(REGISTER, {"run": str(run.uuid), "path": "model/weights", "name": "resnet"})
    assert response.status_code == 404 and not ModelVersion.objects.exists()
