"""Read-only work on a read replica (DATABASE_REPLICA_URL, tracker/db_router.py), and a client that
has just written reading its own writes from the primary.

The replica here is a real second database that lags: a snapshot of the primary taken after the
``run`` fixture (an SQLite backup of the test database, or on PostgreSQL a schema holding a copy of
every table), wired in as the ``replica`` alias. What is written afterwards exists on the primary only,
so a read that does not see it provably came from the replica.
"""

import sqlite3
import time

import pytest
from django.db import connections
from django.test import Client

from runs import services as run_services

from .conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lagging_replica(run, tmp_path):
    primary = connections["default"]
    settings_dict = dict(connections.settings["default"])
    if primary.vendor == "sqlite":
        name = settings_dict["NAME"]
        if not name or name == ":memory:" or "mode=memory" in str(name):
            pytest.skip("the snapshot needs a file database: set RUNSTORE_TEST_SQLITE_NAME")
        primary.ensure_connection()
        replica_name = str(tmp_path / "replica.sqlite3")
        target = sqlite3.connect(replica_name)
        primary.connection.backup(target)
        target.close()
    else:
        # A schema ``replica`` in the same database holding a copy of every table's rows (a database
        # copied with CREATE DATABASE ... TEMPLATE cannot be made while TimescaleDB's scheduler, a
        # superuser session, is connected to the source); the alias reads it through its search_path.
        replica_name = settings_dict["NAME"]
        with primary.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS replica CASCADE")
            cursor.execute("CREATE SCHEMA replica")
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            for (table,) in cursor.fetchall():
                cursor.execute(f'CREATE TABLE replica."{table}" (LIKE public."{table}" INCLUDING DEFAULTS)')
                cursor.execute(f'INSERT INTO replica."{table}" SELECT * FROM public."{table}"')
        settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), "options": "-c search_path=replica"}
    # Kept open for the whole test (CONN_MAX_AGE None) and opened here: Django's test case lets a
    # test use only the aliases it knew when it started, unless their connection already exists.
    connections.settings["replica"] = {**settings_dict, "NAME": replica_name, "CONN_MAX_AGE": None}
    connections["replica"].connect()
    try:
        yield replica_name
    finally:
        connections["replica"].close()
        del connections["replica"]
        del connections.settings["replica"]
        if primary.vendor != "sqlite":
            with primary.cursor() as cursor:
                cursor.execute("DROP SCHEMA IF EXISTS replica CASCADE")


def names(client):
    response = client.get("/api/v1/runs/", {"project": "acme/vision", "columns": "sys/name"})
    assert response.status_code == 200, response.content
    return sorted(r["name"] for r in response.json()["results"])


def test_reads_come_from_the_replica_and_a_token_that_wrote_reads_its_writes(owner, lagging_replica, settings):
    settings.RUNSTORE_REPLICA_PIN_SECONDS = 2
    writer, reader = client_for(owner), client_for(owner)  # two API tokens of one user
    assert writer.post("/api/v1/runs/", {"project": "acme/vision", "name": "fresh"}).status_code == 201

    assert names(reader) == ["baseline"], "the query engine read the replica, which lacks the new run"
    assert names(writer) == ["baseline", "fresh"], "the token that wrote reads the primary"
    time.sleep(2.1)
    assert names(writer) == ["baseline"], "after RUNSTORE_REPLICA_PIN_SECONDS it reads the replica again"


def test_a_browser_that_wrote_reads_its_writes_through_the_pin_cookie(owner, run, lagging_replica):
    editor, other = Client(), Client()
    editor.force_login(owner)
    other.force_login(owner)
    response = editor.post(f"/w/acme/vision/runs/{run.human_id}/edit", {"name": "renamed"})
    assert response.status_code == 302
    assert "runstore_primary_until" in response.cookies

    assert "renamed" in editor.get("/w/acme/vision/").content.decode()
    table = other.get("/w/acme/vision/").content.decode()
    assert "baseline" in table and "renamed" not in table  # the run table of a browser that did not write


def test_writes_and_everything_outside_read_only_work_use_the_primary(owner, run, lagging_replica):
    # Run detail (not read-only work) and the write itself read the primary: the new run is there.
    created, _ = run_services.create_run(owner, run.project, name="only-on-primary")
    api = client_for(owner)
    detail = api.get(f"/api/v1/runs/acme/vision/{created.human_id}/")
    assert detail.status_code == 200 and detail.json()["name"] == "only-on-primary"
    assert names(api) == ["baseline"]  # ... while the query engine reads the lagging replica


def test_without_a_replica_everything_reads_the_primary(owner, run):
    created, _ = run_services.create_run(owner, run.project, name="second")
    assert names(client_for(owner)) == ["baseline", "second"]
    assert "replica" not in connections.settings
