"""The model registry in a real browser: a contributor opens the workspace's models, promotes a
version on the model page (an HTMX form under the CSP) and sees the stages change; light, dark and
phone layouts."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from projects import services as project_services
from projects.models import ProjectRole
from runs import services as run_services
from runs.registry import services as registry
from runs.registry.models import ModelVersion

from .test_browser import login
from .test_team_admin import RECORD_VIOLATIONS

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


def _store(user, run, name, content):
    uploaded = SimpleUploadedFile(name, content)
    uploaded.sha256 = hashlib.sha256(content).hexdigest()
    return run_services.store_upload(user, run, uploaded)


@pytest.fixture
def registered(django_user_model, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    contributor = django_user_model.objects.create_user("contributor", password="pw-contributor")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(project, contributor, ProjectRole.CONTRIBUTOR, by=owner)
    runs = []
    for i, (loss, acc) in enumerate([(0.41, 0.88), (0.22, 0.93)]):
        run, _ = run_services.create_run(owner, project, name=f"resnet-{i}")
        blob = _store(owner, run, "model.pt", f"weights {i}".encode() * 100)
        ops = [
            {"op": "append", "path": "train/loss", "values": [0.9, 0.6, loss]},
            {"op": "assign", "path": "eval/acc", "value": acc},
            {"op": "assign", "path": "parameters/lr", "value": 0.001 * (i + 1)},
            {"op": "upload", "path": "model/weights", "sha256": blob.sha256, "name": "model.pt"},
        ]
        run_services.apply_batch(owner, run, stream="e2e", seq=0, raw_ops=ops)
        runs.append(run)
    registry.register_version(owner, runs[0], "model/weights", "resnet", stage="production", description="baseline")
    second = registry.register_version(owner, runs[1], "model/weights", "resnet", stage="staging")
    registry.set_alias(owner, second, "candidate")
    registry.register_version(owner, runs[1], "model/weights", "distilled-resnet-with-a-long-name")
    return runs


def test_a_contributor_promotes_a_version_on_the_model_page(page, browser, live_server, registered, screenshot):
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    login(page, live_server, "contributor")
    page.goto(f"{live_server.url}/w/acme/")
    page.get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models of acme")).to_be_visible()
    expect(page.locator("tr[data-model='resnet']")).to_contain_text("v1")
    screenshot(page, "registry-models-light")
    page.get_by_role("link", name="registry/resnet", exact=True).click()
    expect(page.get_by_role("heading", name="registry/resnet")).to_be_visible()
    v1, v2 = page.locator("tr[data-version='1']"), page.locator("tr[data-version='2']")
    expect(v2).to_contain_text("Staging")
    expect(v2).to_contain_text("eval/acc")
    expect(v2).to_contain_text("@candidate")
    expect(v1).to_contain_text("Production")

    v2.get_by_label("Stage of v2").select_option("production")
    v2.get_by_label("archive others").check()
    v2.get_by_role("button", name="Apply").click()
    expect(page.locator("tr[data-version='2'][data-stage='production']")).to_be_visible()
    expect(page.locator("tr[data-version='1'][data-stage='archived']")).to_contain_text("Archived")
    expect(page.locator("tr[data-version='2']")).to_contain_text("by contributor")
    assert dict(ModelVersion.objects.filter(model__name="resnet").values_list("version", "stage")) == {
        1: "archived",
        2: "production",
    }
    problems.extend(page.evaluate("window.__cspViolations || []"))
    assert not problems, problems
    model_page = page.url
    screenshot(page, "registry-model-light")
    for scheme, viewport, name in [
        ("dark", {"width": 1400, "height": 900}, "registry-model-dark"),
        ("light", PHONE, "registry-model-390"),
    ]:
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        other = context.new_page()
        login(other, live_server, "contributor")
        other.goto(model_page)
        expect(other.locator("tr[data-version='2']")).to_contain_text("Production")
        screenshot(other, name)
        if viewport is PHONE:
            assert other.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        if viewport is PHONE:
            other.goto(f"{live_server.url}/w/acme/-/models")
            assert other.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            screenshot(other, "registry-models-390")
        context.close()


def test_a_contributor_registers_a_run_file_from_the_run_page(page, browser, live_server, registered, screenshot):
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    login(page, live_server, "contributor")
    run_page = f"{live_server.url}/w/acme/vision/runs/{registered[1].human_id}/"
    page.goto(run_page)
    page.get_by_text("Register as a model version").click()
    form = page.locator("form.register-model-form")
    form.locator("select[name=path]").select_option("model/weights")
    form.locator("input[name=name]").fill("resnet")
    form.locator("select[name=stage]").select_option("staging")
    screenshot(page, "registry-register-light")
    form.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name="registry/resnet")).to_be_visible()
    expect(page.locator("tr[data-version='3'][data-stage='staging']")).to_be_visible()
    assert ModelVersion.objects.get(model__name="resnet", version=3).created_by.username == "contributor"
    problems.extend(page.evaluate("window.__cspViolations || []"))
    assert not problems, problems
    for scheme, viewport, name in [
        ("dark", {"width": 1400, "height": 900}, "registry-register-dark"),
        ("light", PHONE, "registry-register-390"),
    ]:
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        other = context.new_page()
        login(other, live_server, "contributor")
        other.goto(run_page + "#files")
        other.get_by_text("Register as a model version").click()
        expect(other.locator("form.register-model-form")).to_be_visible()
        other.locator("details.register-model").scroll_into_view_if_needed()
        screenshot(other, name)
        if viewport is PHONE:
            assert other.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        context.close()
