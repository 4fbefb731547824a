"""Hostile files and previews: framing of the sandboxed previews (issue 10, defect 5)."""

import pytest

from runs import processing

from .conftest import run_url
from .test_tasks import NOTEBOOK, attach, png_bytes


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }


def page(run, suffix=""):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/{suffix}"


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def framed_files(owner_api, run):
    """An HTML report and a notebook (rendered by processing) attached to ``run``."""
    attach(owner_api, run, "report.html", b"<html><body><p>framed report</p></body></html>", "files/report")
    processing.process_blob(attach(owner_api, run, "analysis.ipynb", NOTEBOOK, "files/notebook"))
    attach(owner_api, run, "sample.png", png_bytes((20, 20)), "files/image")
    return run


def test_html_report_and_notebook_previews_may_be_framed_by_runstore_only(client, owner, owner_api, framed_files):
    client.force_login(owner)
    run = framed_files
    report = client.get(page(run, "raw"), {"path": "files/report"})
    notebook = owner_api.get(run_url(run, "files/preview"), {"path": "files/notebook", "kind": "html"})
    assert b"framed report" in body(report) and b"Training notes" in body(notebook)
    for response in (report, notebook):
        assert response.status_code == 200 and response["X-Frame-Options"] == "SAMEORIGIN"
        directives = [d.strip() for d in response["Content-Security-Policy"].split(";")]
        assert directives[0] == "sandbox" and "frame-ancestors 'self'" in directives


def test_every_other_page_still_refuses_to_be_framed(client, owner, owner_api, framed_files):
    client.force_login(owner)
    run = framed_files
    pages = [
        page(run),
        page(run, "preview?path=files/report"),
        page(run, "preview?path=files/notebook"),
        page(run, "gallery?path=files/image"),
        f"/w/{run.project.workspace.slug}/{run.project.slug}/",
        f"/w/{run.project.workspace.slug}/{run.project.slug}/compare?runs={run.human_id}",
        "/",
    ]
    for url in pages:
        response = client.get(url)
        body(response)
        assert response["X-Frame-Options"] == "DENY", url
    client.logout()
    assert client.get("/accounts/login/")["X-Frame-Options"] == "DENY"
    download = owner_api.get(run_url(run, "files/download"), {"path": "files/report"})
    body(download)
    assert download["X-Frame-Options"] == "DENY"
