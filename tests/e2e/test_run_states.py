"""Run states in the browser: a client process killed with SIGKILL shows as crashed once its pings have
stopped for RUNSTORE_CRASH_AFTER seconds and the periodic check has run; a ping makes it running again."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from projects import services as project_services
from runs import tasks
from runs.models import Run

from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]

TRAINING = """
import sys, time
import runstore

run = runstore.init_run(
    project="acme/vision", name="doomed", capture_stdout=False, capture_stderr=False,
    capture_hardware_metrics=False, capture_source=False, capture_environment=False,
)
run["parameters"] = {"lr": 0.01}
for step in range(20):
    run["train/loss"].append(1.0 / (step + 1))
assert run.wait(timeout=60), "the server did not take the batch"
print(run["sys/id"].fetch(), flush=True)
time.sleep(600)
"""


@pytest.fixture
def owner(django_user_model):
    user = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(user, "acme", "Acme")
    project_services.create_project(user, workspace, "vision", key="VIS")
    return user


def start_training(live_server, token, tmp_path, script=TRAINING):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "RUNSTORE_"))}
    env.update(RUNSTORE_URL=live_server.url, RUNSTORE_API_TOKEN=token, RUNSTORE_HOME=str(tmp_path / "queues"))
    env["PYTHONPATH"] = str(REPO / "client" / "src")
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_client_shows_crashed_and_a_ping_revives_it(page, live_server, owner, settings, tmp_path, screenshot):
    settings.RUNSTORE_CRASH_AFTER = 2
    _, token = ApiToken.issue(owner, name="training")
    process = start_training(live_server, token, tmp_path)
    try:
        human_id = process.stdout.readline().strip()
        assert human_id == "VIS-1", process.stderr.read() if process.poll() is not None else human_id
        login(page, live_server)
        page.goto(f"{live_server.url}/w/acme/vision/runs/{human_id}/")
        header_state = page.locator("#run-header h1 .state")
        expect(header_state).to_have_text("running")

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        time.sleep(settings.RUNSTORE_CRASH_AFTER + 1)
        assert tasks.mark_crashed_runs.apply().get() == 1
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()

    # the open page polls its header while the run is running: it turns crashed by itself
    expect(header_state).to_have_text("crashed", timeout=15_000)
    expect(header_state).to_have_class(re.compile(r"\bstate-crashed\b"))
    screenshot(page, "run-crashed")
    page.emulate_media(color_scheme="dark")
    expect(header_state).to_have_css("color", "rgb(253, 176, 34)")
    screenshot(page, "run-crashed-dark")
    page.emulate_media(color_scheme="light")

    # the run table finds it with sys/state = "crashed"
    page.goto(f"{live_server.url}/w/acme/vision/")
    page.locator("#query").fill('sys/state = "crashed"')
    page.locator("#query").press("Escape")
    page.click("#filter-form button[type=submit]")
    rows = page.locator("#runs-grid tbody tr[data-url]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".state")).to_have_text("crashed")
    screenshot(page, "run-table-crashed-filter")

    # a ping (the client's "still alive") makes it running again
    run = Run.objects.get(number=1)
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/runs/{run.uuid}/ping", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status < 300
    page.goto(f"{live_server.url}/w/acme/vision/runs/{human_id}/")
    expect(header_state).to_have_text("running")


FAILING = """
import sys
import runstore

run = runstore.init_run(
    project="acme/vision", name="broken", capture_hardware_metrics=False, capture_source=False,
    capture_environment=False,
)
for step in range(40):
    print(f"warning {step}: slow data loader", file=sys.stderr)
print(run["sys/id"].fetch(), flush=True)
def forward(batch):
    return 1 / batch
forward(0)
"""


def test_failed_run_page_shows_the_traceback_and_the_last_stderr_lines(page, live_server, owner, tmp_path, screenshot):
    _, token = ApiToken.issue(owner, name="training")
    process = start_training(live_server, token, tmp_path, FAILING)
    out, err = process.communicate(timeout=120)
    human_id = out.strip().splitlines()[0] if out.strip() else ""
    assert process.returncode != 0 and human_id == "VIS-1", err[-3000:]

    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/{human_id}/")
    expect(page.locator("#run-header h1 .state")).to_have_text("failed")
    failure = page.locator("#run-header .failure")
    expect(failure).to_be_visible()
    traceback = failure.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last):")
    expect(traceback).to_contain_text("ZeroDivisionError: division by zero")
    # preformatted: one line per frame, as Python printed it
    text = traceback.inner_text()
    assert "\n" in text and re.search(r"^ZeroDivisionError: division by zero$", text, re.M), text
    assert traceback.evaluate("el => getComputedStyle(el).whiteSpace") == "pre"
    tail = failure.locator("pre.stderr-tail")
    expect(tail).to_contain_text("warning 39: slow data loader")
    expect(tail).not_to_contain_text("warning 0: slow data loader")
    # it is at the top: above the charts and the attributes
    assert failure.bounding_box()["y"] < page.locator("#charts").bounding_box()["y"]
    screenshot(page, "run-failed")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(failure.locator("pre.traceback")).to_be_visible()
    # the traceback scrolls inside its own box instead of widening the page
    box = failure.bounding_box()
    assert box["x"] + box["width"] <= 390, box
    assert traceback.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    screenshot(page, "run-failed-narrow")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "run-failed-narrow-dark")
