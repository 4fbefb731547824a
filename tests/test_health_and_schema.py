import pytest
from django.db import connection

from runs.timescale import timescale_status


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_series_storage(admin_client, settings, tmp_path):
    response = admin_client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["database"]["ok"] is True
    assert "migrations applied" in body["checks"]["database"]["detail"]
    assert "timescaledb" in body["checks"]


def test_readyz_is_503_when_the_broker_is_unreachable(admin_client, settings):
    from tracker.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = admin_client.get("/readyz")
    finally:
        app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_openapi_schema_and_docs(client, owner):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/runs/{run_ref}/batch", "/api/v1/runs/", "/api/v1/workspaces/"):
        assert path in text
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"cdn" not in docs.content.lower()


@pytest.mark.django_db
def test_float_points_live_in_a_hypertable_on_timescaledb():
    if connection.vendor != "postgresql":
        assert timescale_status().startswith("not in use")
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cursor.fetchone() is None:
            pytest.skip("this PostgreSQL has no TimescaleDB")
        cursor.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        assert ("runs_floatpoint",) in cursor.fetchall()
    assert timescale_status().startswith("in use: TimescaleDB")


def test_openapi_schema_generates_without_a_warning_and_validates(tmp_path):
    """Every operation declares its request and response schema (no free-form objects, no
    collisions): drf-spectacular fails on any warning, then validates the document."""
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "bearerAuth" in text and "RunPage" in text and "UploadResult" in text
