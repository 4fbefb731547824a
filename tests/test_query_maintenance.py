"""After a bulk write the maintenance queue analyzes (and vacuums) the query tables at once, so the query
engine's plans never wait for autovacuum to come round (runs/maintenance.py)."""

import pytest
from django.conf import settings
from django.db import connection, transaction

from runs import maintenance, tasks
from runs.models import Attribute, Run

from .conftest import batch


def _counts() -> dict[str, tuple[int, int]]:
    """table -> (manual ANALYZE count, manual VACUUM count), read fresh."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT relname, analyze_count, vacuum_count FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [maintenance.query_tables()],
        )
        return {name: (analyzed, vacuumed) for name, analyzed, vacuumed in cursor.fetchall()}


def _new_runs(api, first: int, last: int) -> None:
    for number in range(first, last + 1):
        response = api.post("/api/v1/runs/", {"project": "acme/vision", "name": f"r{number}"}, format="json")
        assert response.status_code == 201, response.content
        run = Run.objects.get(uuid=response.json()["uuid"])
        ops = [{"op": "assign", "path": f"params/p{k}", "value": k * number} for k in range(20)]
        assert batch(api, run, ops).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_new_runs_queues_one_prompt_check_that_analyzes_and_vacuums_what_it_wrote(
    owner_api, project, settings, monkeypatch
):
    settings.RUNSTORE_MAINTENANCE_MIN_ROWS = 30
    settings.RUNSTORE_MAINTENANCE_PERCENT = 0
    queued = []
    monkeypatch.setattr(tasks.maintain_query_tables, "apply_async", lambda *args, **kwargs: queued.append(kwargs))
    monkeypatch.setattr(maintenance, "_queued_for", 0.0)
    before = _counts() if connection.vendor == "postgresql" else {}

    _new_runs(owner_api, 1, 6)
    assert Attribute.objects.filter(path__startswith="params/").count() == 120

    if connection.vendor != "postgresql":
        assert queued == []  # SQLite: nothing to maintain, nothing queued
        assert tasks.maintain_query_tables.apply(kwargs={"after_write": True}).get() == {}
        return
    # one check for the whole burst, a couple of seconds after its first write, not one per write
    assert queued == [{"kwargs": {"after_write": True}, "countdown": settings.RUNSTORE_MAINTENANCE_DELAY}]
    assert 0 < settings.RUNSTORE_MAINTENANCE_DELAY <= 5

    done = tasks.maintain_query_tables.apply(kwargs=queued[0]["kwargs"]).get()  # what the worker runs

    attributes = Attribute._meta.db_table
    assert done[attributes] == "vacuum"  # 120 new rows: statistics and the visibility map
    after = _counts()
    assert after[attributes][0] > before[attributes][0] and after[attributes][1] > before[attributes][1]
    for table in done:
        assert after[table][0] > before[table][0], table
    assert tasks.maintain_query_tables.apply().get() == {}  # nothing changed since: nothing due


@pytest.mark.django_db(transaction=True)
def test_writes_after_the_queued_check_has_run_queue_another(owner_api, project, settings, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.maintain_query_tables, "apply_async", lambda *args, **kwargs: queued.append(kwargs))
    monkeypatch.setattr(maintenance, "_queued_for", 0.0)
    _new_runs(owner_api, 1, 1)
    monkeypatch.setattr(maintenance, "_queued_for", 0.0)  # its time has come: the next write is after it
    _new_runs(owner_api, 2, 2)
    assert len(queued) == (2 if connection.vendor == "postgresql" else 0)


def test_a_check_queued_by_a_write_waits_for_a_pass_under_way(monkeypatch):
    """A beat check finding another pass under way is dropped; one queued by a write must see that
    write, so it waits for the lock instead."""
    calls = []
    monkeypatch.setattr(maintenance, "maintain", lambda **kwargs: calls.append(kwargs) or {})
    tasks.maintain_query_tables.apply(kwargs={"after_write": True}).get()
    tasks.maintain_query_tables.apply().get()
    assert calls == [{"wait": True}, {"wait": False}]


@pytest.mark.django_db
def test_maintenance_below_the_threshold_does_nothing(owner_api, project, settings):
    settings.RUNSTORE_MAINTENANCE_MIN_ROWS = 10**9
    _new_runs(owner_api, 1, 2)
    before = _counts() if connection.vendor == "postgresql" else {}
    assert maintenance.maintain() == {}
    if connection.vendor == "postgresql":
        assert _counts() == before


@pytest.mark.django_db(transaction=True)
def test_maintenance_inside_a_transaction_analyzes_instead_of_vacuuming(owner_api, project, settings):
    # VACUUM cannot run inside a transaction block; the pass still refreshes the statistics
    settings.RUNSTORE_MAINTENANCE_MIN_ROWS = 30
    settings.RUNSTORE_MAINTENANCE_PERCENT = 0
    _new_runs(owner_api, 1, 2)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the writes reach the statistics as another process's would
            cursor.execute("SELECT pg_stat_force_next_flush()")
    with transaction.atomic():
        done = maintenance.maintain()
    if connection.vendor == "postgresql":
        assert done[Attribute._meta.db_table] == "analyze" and set(done.values()) == {"analyze"}
    else:
        assert done == {}


def test_the_maintenance_runs_every_minute_on_the_maintenance_queue():
    from tracker.celery import app

    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "runs.tasks.maintain_query_tables")
    assert entry["schedule"] <= 60
    assert app.amqp.router.route({}, "runs.tasks.maintain_query_tables")["queue"].name == "maintenance"


def test_the_maintenance_check_runs_every_few_seconds_and_a_late_one_is_dropped():
    """A bulk write's slow plans last seconds, not a minute: the check (one statistics view when
    nothing is due) is scheduled every RUNSTORE_MAINTENANCE_INTERVAL seconds (default 10), and a
    check still waiting after its interval expires instead of piling up behind a long VACUUM."""
    from tracker.celery import app

    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "runs.tasks.maintain_query_tables")
    assert entry["schedule"] == settings.RUNSTORE_MAINTENANCE_INTERVAL == 10
    assert entry["options"]["expires"] <= entry["schedule"]
