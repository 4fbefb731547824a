"""Crashed runs: a running run whose pings stopped RUNSTORE_CRASH_AFTER seconds ago is marked crashed by
the periodic task, is found by ``sys/state = "crashed"``, and a ping or a write makes it running again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import services, tasks
from runs.models import Run
from tracker.celery import app

from .conftest import batch, run_url


def silence(run, seconds):
    """The run's last sign of life was ``seconds`` ago (what a process killed that long ago leaves)."""
    Run.objects.filter(pk=run.pk).update(ping_at=timezone.now() - timedelta(seconds=seconds))


def state_of(client, run):
    response = client.get(run_url(run))
    assert response.status_code == 200, response.content
    return response.json()["state"]


def names(client, query):
    response = client.get("/api/v1/runs/", {"project": "acme/vision", "columns": "sys/name", "query": query})
    assert response.status_code == 200, response.content
    return {r["name"] for r in response.json()["results"]}


@pytest.fixture
def crash_after(settings):
    settings.RUNSTORE_CRASH_AFTER = 60
    return 60


def test_run_silent_longer_than_crash_after_is_marked_crashed_by_the_periodic_task(owner_api, run, crash_after):
    silence(run, crash_after + 5)
    assert tasks.mark_crashed_runs.apply().get() == 1
    assert state_of(owner_api, run) == "crashed"


def test_run_that_pinged_recently_stays_running(owner_api, run, crash_after):
    silence(run, crash_after - 10)
    assert tasks.mark_crashed_runs.apply().get() == 0
    assert state_of(owner_api, run) == "running"


def test_finished_failed_and_deleted_runs_are_never_marked_crashed(owner, owner_api, project, crash_after):
    finished, _ = services.create_run(owner, project, name="done")
    services.update_run(owner, finished, state="finished")
    failed, _ = services.create_run(owner, project, name="broke")
    services.update_run(owner, failed, state="failed")
    deleted, _ = services.create_run(owner, project, name="binned")
    services.delete_run(owner, deleted)
    for run in (finished, failed, deleted):
        silence(run, crash_after * 10)
    assert tasks.mark_crashed_runs.apply().get() == 0
    assert state_of(owner_api, finished) == "finished"
    assert state_of(owner_api, failed) == "failed"


def test_crashed_duration_stops_at_the_last_ping(owner_api, run, crash_after):
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=1000))
    silence(run, 400)
    tasks.mark_crashed_runs.apply()
    response = owner_api.get(
        "/api/v1/runs/", {"project": "acme/vision", "columns": "sys/running_time", "query": 'sys/state = "crashed"'}
    )
    assert response.status_code == 200, response.content
    (row,) = response.json()["results"]
    assert 595 <= row["fields"]["sys/running_time"] <= 605


def test_crashed_is_filterable_in_the_query_language(owner, owner_api, project, run, crash_after):
    alive, _ = services.create_run(owner, project, name="alive")
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    assert names(owner_api, 'sys/state = "crashed"') == {"baseline"}
    assert names(owner_api, 'sys/state = "running"') == {"alive"}
    assert names(owner_api, 'sys/state != "crashed"') == {"alive"}
    response = owner_api.get("/api/v1/runs/", {"project": "acme/vision", "state": "crashed"})
    assert response.status_code == 200, response.content
    assert [r["name"] for r in response.json()["results"]] == ["baseline"]


def test_query_editor_suggests_the_crashed_state(owner_api, run):
    text = 'sys/state = "cr'
    response = owner_api.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": text, "cursor": len(text)})
    assert response.status_code == 200, response.content
    assert '"crashed"' in [item["insert"] for item in response.json()["items"]]


def test_a_ping_revives_a_crashed_run(owner_api, run, crash_after):
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    assert owner_api.post(run_url(run, "ping")).status_code in (200, 204)
    assert state_of(owner_api, run) == "running"
    assert tasks.mark_crashed_runs.apply().get() == 0


def test_a_write_revives_a_crashed_run(owner_api, run, crash_after):
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    response = batch(owner_api, run, [{"op": "append", "path": "train/loss", "values": [0.5]}])
    assert response.status_code == 200, response.content
    assert state_of(owner_api, run) == "running"


def test_a_run_marked_crashed_can_still_finish(owner_api, run, crash_after):
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    response = owner_api.patch(run_url(run), {"state": "finished"}, format="json")
    assert response.status_code == 200, response.content
    assert state_of(owner_api, run) == "finished"
    assert tasks.mark_crashed_runs.apply().get() == 0


def test_viewer_cannot_revive_a_crashed_run_by_pinging(api, viewer, run, crash_after):
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    assert api(viewer).post(run_url(run, "ping")).status_code == 403
    assert Run.objects.get(pk=run.pk).state == "crashed"


def test_the_crash_check_runs_every_minute():
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "runs.tasks.mark_crashed_runs")
    assert entry["schedule"] == 60.0


def test_a_crashed_run_page_keeps_polling_its_header_so_a_revival_shows(client, owner, run, crash_after):
    silence(run, crash_after + 1)
    tasks.mark_crashed_runs.apply()
    client.force_login(owner)
    html = client.get(f"/w/acme/vision/runs/{run.human_id}/").content.decode()
    header = html[html.index('<section id="run-header"') :]
    header = header[: header.index(">")]
    assert "fragment=header" in header and 'hx-trigger="every 30s"' in header
