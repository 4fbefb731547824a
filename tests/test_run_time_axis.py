"""The chart-data endpoint serves x on wall-clock or relative time, one time axis for a run's
training and monitoring series."""

import datetime

import pytest
from django.test import Client

from runs.models import Run

from .conftest import batch, client_for

START = 1_700_000_000.0


@pytest.fixture
def timed_run(owner, run):
    """A run started at START: a loss logged at steps 0..9, 10 s apart from START + 5, and CPU samples
    every 4 s from START (steps are sample numbers, unrelated to the training steps)."""
    Run.objects.filter(pk=run.pk).update(
        created_at=datetime.datetime.fromtimestamp(START, datetime.UTC),
        finished_at=datetime.datetime.fromtimestamp(START + 120, datetime.UTC),
        state="finished",
    )
    ops = [
        {
            "op": "append",
            "path": "train/loss",
            "values": [1.0 / (i + 1) for i in range(10)],
            "steps": list(range(10)),
            "timestamps": [START + 5 + 10 * i for i in range(10)],
        },
        {
            "op": "append",
            "path": "monitoring/cpu",
            "values": [50.0 + i for i in range(30)],
            "steps": list(range(30)),
            "timestamps": [START + 4 * i for i in range(30)],
        },
    ]
    assert batch(client_for(owner), run, ops).status_code == 200
    run.refresh_from_db()
    return run


def chart(user, run, path, **params):
    client = Client()
    client.force_login(user)
    query = {"runs": run.human_id, "path": path, "buckets": "100", **params}
    response = client.get(f"/w/{run.project.workspace.slug}/{run.project.slug}/chart-data", query)
    assert response.status_code == 200
    return response.json()["runs"][0]


@pytest.mark.django_db
def test_wall_time_axis_gives_each_point_its_timestamp_and_the_run_span(viewer, timed_run):
    loss = chart(viewer, timed_run, "train/loss", x="time")
    cpu = chart(viewer, timed_run, "monitoring/cpu", x="time")
    assert loss["times"] == [START + 5 + 10 * i for i in range(10)]
    assert cpu["times"][:3] == [START, START + 4, START + 8]
    # both charts get the same span to draw on, whatever their steps
    assert loss["start"] == cpu["start"] == START
    assert loss["end"] == cpu["end"] == START + 120


@pytest.mark.django_db
def test_relative_time_axis_counts_seconds_from_the_run_start(viewer, timed_run):
    loss = chart(viewer, timed_run, "train/loss", x="relative")
    cpu = chart(viewer, timed_run, "monitoring/cpu", x="relative")
    assert loss["times"] == [5.0 + 10 * i for i in range(10)]
    assert cpu["times"][:3] == [0.0, 4.0, 8.0]
    # the loss at step 2 (25 s) and the CPU sample at 24 s sit side by side on one axis
    assert loss["times"][loss["steps"].index(2)] == 25.0 and cpu["times"][cpu["steps"].index(6)] == 24.0


@pytest.mark.django_db
def test_step_axis_sends_no_times(viewer, timed_run):
    loss = chart(viewer, timed_run, "train/loss")
    assert "times" not in loss and "start" not in loss
    assert loss["steps"] == list(range(10))


@pytest.mark.django_db
def test_time_axis_of_a_long_series_stays_bounded(viewer, owner, run):
    values = [float(i) for i in range(5000)]
    ops = [{"op": "append", "path": "train/loss", "values": values, "timestamps": [START + i for i in range(5000)]}]
    assert batch(client_for(owner), run, ops).status_code == 200
    loss = chart(viewer, run, "train/loss", x="relative", buckets="200")
    assert len(loss["times"]) == len(loss["steps"]) <= 200
    assert loss["times"] == sorted(loss["times"])
