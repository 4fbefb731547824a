"""The run page's sandboxed previews (an HTML report, a rendered notebook) display in a real browser."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from projects import services as project_services
from runs import processing, services

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

NOTEBOOK = (
    b'{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Notebook shown in its frame"]}],'
    b' "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
)


@pytest.fixture
def run_with_reports(django_user_model, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    run, _ = services.create_run(owner, project, name="reports")
    ops = []
    for path, name, content in [
        ("files/report", "report.html", b"<html><body><h1>Report shown in its frame</h1></body></html>"),
        ("files/notebook", "analysis.ipynb", NOTEBOOK),
    ]:
        upload = SimpleUploadedFile(name, content, content_type="text/html" if name.endswith(".html") else "")
        upload.sha256 = hashlib.sha256(content).hexdigest()
        blob = services.store_upload(owner, run, upload)
        processing.process_blob(blob.sha256)
        ops.append({"op": "upload", "path": path, "sha256": blob.sha256, "name": name})
    services.apply_batch(run.owner, run, stream="s", seq=0, raw_ops=ops)
    return run


def test_html_report_and_notebook_render_inside_their_sandboxed_frames(page, live_server, run_with_reports, screenshot):
    refused = []
    refusal = ("x-frame-options", "frame-ancestors", "refused to display")
    page.on(
        "console",
        lambda message: refused.append(message.text) if any(r in message.text.lower() for r in refusal) else None,
    )
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/{run_with_reports.human_id}/")
    for index, text in [(1, "Notebook shown in its frame"), (2, "Report shown in its frame")]:
        link = page.locator(f"#files a[hx-target='#preview-{index}']")
        link.scroll_into_view_if_needed()
        with page.expect_response(lambda response: "/preview?" in response.url):
            link.click()
        frame = page.locator(f"#preview-{index} iframe")
        expect(frame).to_have_attribute("sandbox", "")
        # rendered, not shown as source: the text is a heading inside the frame
        heading = page.frame_locator(f"#preview-{index} iframe").get_by_role("heading", name=text)
        expect(heading).to_be_visible(timeout=5000)
        page.wait_for_load_state("networkidle")  # the frame's layout settles before the next click
    screenshot(page, "run-page-framed-previews")
    assert refused == []
