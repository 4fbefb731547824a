"""Artifact versions in a real browser: the run page's lineage graph (expandable with HTMX) and
the artifact page (versions, runs, files, a diff), in light, dark and 390 px layouts."""

import hashlib
import re

import pytest
from playwright.sync_api import expect

from projects import services as project_services
from projects.models import ProjectRole
from runs import services

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


def track(user, run, path, files, *, role="input", name=None, seq=0):
    rows = sorted((p, hashlib.sha256(c).hexdigest(), len(c)) for p, c in files.items())
    digest = (
        rows[0][1]
        if len(rows) == 1
        else hashlib.sha256("".join(f"{r}\0{h}\0{n}\n" for r, h, n in rows).encode()).hexdigest()
    )
    op = {
        "op": "track",
        "path": path,
        "hash": digest,
        "role": role,
        "files": [{"path": r, "hash": h, "size": n} for r, h, n in rows],
    }
    if name:
        op["name"] = name
    services.apply_batch(user, run, stream=f"t{path}", seq=seq, raw_ops=[op])


@pytest.fixture
def world(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    vision = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(vision, viewer, ProjectRole.VIEWER)
    prep, _ = services.create_run(owner, vision, name="prepare imagenet subset")
    prep2, _ = services.create_run(owner, vision, name="prepare v2")
    train, _ = services.create_run(owner, vision, name="resnet50 training")
    evaluate, _ = services.create_run(owner, vision, name="evaluation")
    v1 = {f"train/{i:03}.jpg": bytes([i]) * (1000 + i) for i in range(30)}
    v2 = {**{k: v for k, v in v1.items() if not k.endswith("007.jpg")}, "train/100.jpg": b"new" * 500}
    v2["train/001.jpg"] = b"relabelled" * 120
    track(owner, prep, "raw", {"raw.tar": b"raw" * 1000})
    track(owner, prep, "data", v1, role="output", name="imagenet-subset", seq=1)
    track(owner, prep2, "data", v2, role="output", name="imagenet-subset")
    track(owner, train, "data/train", v1, name="imagenet-subset")
    track(owner, train, "data/labels", {"labels.csv": b"id,label\n"}, name="labels")
    track(owner, train, "model", {"model.pt": b"weights" * 100}, role="output", name="resnet50", seq=1)
    track(owner, evaluate, "model", {"model.pt": b"weights" * 100}, name="resnet50")
    return {"train": train, "prep": prep, "eval": evaluate}


def login(page, live_server, username="owner"):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def csp_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def test_run_page_lineage_graph_expands_to_a_neighbour(page, live_server, world, screenshot):
    errors = csp_errors(page)
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-3/")
    page.locator("#lineage").scroll_into_view_if_needed()
    graph = page.locator("#lineage-graph svg")
    expect(graph).to_be_visible()
    expect(graph.locator("g.lg-focus")).to_contain_text("VIS-3")
    expect(graph.locator("g.lg-version")).to_have_count(3)  # two inputs, one output
    expect(graph.locator("g.lg-run", has_text="VIS-1")).to_be_visible()  # produced the data
    expect(graph.locator("g.lg-run", has_text="VIS-4")).to_be_visible()  # consumed the model
    screenshot(page, "lineage-graph-light", full_page=False)
    # expanding the producer re-centres the graph on it, without leaving the page
    graph.locator("g.lg-run", has_text="VIS-1").locator("a").click()
    expect(page.locator("#lineage-graph svg g.lg-focus")).to_contain_text("VIS-1")
    assert page.url.endswith("/runs/VIS-3/")
    expect(page.locator("#lineage-graph svg g.lg-run", has_text="VIS-3")).to_be_visible()
    page.emulate_media(color_scheme="dark")
    page.locator("#lineage").scroll_into_view_if_needed()
    screenshot(page, "lineage-graph-dark", full_page=False)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-3/")
    page.locator("#lineage").scroll_into_view_if_needed()
    expect(page.locator("#lineage-graph svg")).to_be_visible()
    # the graph scrolls inside its card; the page itself does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "lineage-graph-390", full_page=False)
    assert errors == []


def test_artifact_page_versions_runs_files_and_diff(page, live_server, world, screenshot):
    errors = csp_errors(page)
    login(page, live_server, "viewer")
    page.goto(f"{live_server.url}/w/acme/-/artifacts/imagenet-subset")
    expect(page.locator("h1")).to_contain_text("imagenet-subset")
    expect(page.locator(".artifact-versions tbody tr")).to_have_count(2)
    expect(page.locator(".artifact-versions")).to_contain_text("VIS-3")
    expect(page.locator("#diff")).to_contain_text("1 added")
    expect(page.locator("#diff")).to_contain_text("1 removed")
    expect(page.locator("#diff")).to_contain_text("1 changed")
    screenshot(page, "artifact-page-light")
    # swap the two versions and compare
    options = page.locator("select[name=a] option")
    page.select_option("select[name=a]", options.nth(0).get_attribute("value"))
    page.select_option("select[name=b]", options.nth(1).get_attribute("value"))
    page.click("#diff button[type=submit]")
    expect(page.locator(".artifact-diff")).to_contain_text("train/100.jpg")
    expect(page.locator(".artifact-diff tr.diff-removed")).to_contain_text("train/100.jpg")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "artifact-page-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/w/acme/-/artifacts/imagenet-subset")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "artifact-page-390")
    assert errors == []


def test_workspace_artifact_list_filters_and_links_to_each_artifact(page, live_server, world, screenshot):
    errors = csp_errors(page)
    login(page, live_server, "viewer")
    page.goto(f"{live_server.url}/w/acme/")
    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Artifacts").click()
    expect(page.locator("h1")).to_contain_text("Artifacts of acme")
    rows = page.locator(".artifact-list tbody tr")
    expect(rows).to_have_count(3)  # imagenet-subset, labels, resnet50
    subset = page.locator("tr[data-artifact=imagenet-subset]")
    expect(subset.locator("td").nth(0)).to_have_text("2")  # two versions
    expect(subset).to_contain_text("1 run")  # consumed by the training run
    expect(subset).to_contain_text("2 runs")  # produced by the two preparation runs
    screenshot(page, "artifact-list-light")
    page.fill("#artifact-q", "RES")
    page.click(".artifact-filter button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("resnet50")
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live_server.url}/w/acme/-/artifacts/")
    screenshot(page, "artifact-list-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/w/acme/-/artifacts/")
    # the table scrolls inside its card; the page itself does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "artifact-list-390")
    page.locator("tr[data-artifact=imagenet-subset] th a").click()
    expect(page.locator("h1")).to_contain_text("imagenet-subset")
    assert errors == []
