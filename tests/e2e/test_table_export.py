"""The run table's Export control in a browser: CSV and Parquet of the view on screen, downloaded."""

import csv
import io
import re

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import expect

from projects import services as project_services
from projects.models import ProjectRole
from runs import services

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def table(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(project, viewer, ProjectRole.VIEWER)
    for lr in (0.1, 0.01, 0.001):
        run, _ = services.create_run(owner, project, name=f"lr-{lr}")
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters/lr", "value": lr},
                {"op": "append", "path": "train/loss", "values": [1.0, lr * 2, lr]},
            ],
        )
    return project


def test_viewer_downloads_the_filtered_sorted_view_as_csv_and_parquet(page, live_server, table, screenshot):
    login(page, live_server, "viewer")
    page.goto(f"{live_server.url}/w/acme/vision/?c=sys/name&c=parameters/lr&c=train/loss:min&sort=parameters/lr")
    page.fill("#query", "parameters/lr > 0.005")
    page.locator("#filter-form button[type=submit]").click()
    expect(page.locator("#runs-grid tbody tr[data-url]")).to_have_count(2)
    control = page.locator(".export-links")
    expect(control).to_be_visible()
    with page.expect_download() as download:
        control.get_by_role("link", name="CSV").click()
    assert re.fullmatch(r"acme-vision-runs-\d{4}-\d\d-\d\d\.csv", download.value.suggested_filename)
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rows == [
        ["sys/name", "parameters/lr", "train/loss:min"],
        ["lr-0.01", "0.01", "0.01"],
        ["lr-0.1", "0.1", "0.1"],
    ]
    with page.expect_download() as download:
        control.get_by_role("link", name="Parquet").click()
    assert download.value.suggested_filename.endswith(".parquet")
    data = pq.read_table(download.value.path()).to_pydict()
    assert data == {"sys/name": ["lr-0.01", "lr-0.1"], "parameters/lr": [0.01, 0.1], "train/loss:min": [0.01, 0.1]}

    screenshot(page, "run-table-export-light", full_page=False)
    page.emulate_media(color_scheme="dark")
    screenshot(page, "run-table-export-dark", full_page=False)
    page.set_viewport_size(PHONE)
    expect(control).to_be_visible()
    box = control.bounding_box()
    assert box["x"] + box["width"] <= PHONE["width"], box
    screenshot(page, "run-table-export-390", full_page=False)
