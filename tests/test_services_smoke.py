"""Smoke tests for the services started by ``scripts/services.sh up``.

Each test talks to one service named by a ``RUNSTORE_TEST_*`` variable (see
``var/services.env``) and is skipped when that variable is not set. No Django
database is involved.
"""

import os
import uuid

import pytest


def env_or_skip(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run scripts/services.sh up and source var/services.env)")
    return value


def test_postgres_has_timescaledb_and_makes_a_hypertable():
    url = env_or_skip("RUNSTORE_TEST_PG_URL")
    psycopg = pytest.importorskip("psycopg")
    table = f"smoke_{uuid.uuid4().hex[:12]}"

    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.commit()
        (version,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert version

        # TimescaleDB refuses temporary and unlogged tables, so use a plain
        # table with a unique name and drop it.
        try:
            conn.execute(f"CREATE TABLE {table} (step bigint NOT NULL, value double precision)")
            conn.execute(f"SELECT create_hypertable('{table}', by_range('step', 100000))")
            conn.execute(f"INSERT INTO {table} SELECT g, g FROM generate_series(0, 299999, 1000) AS g")
            (chunks,) = conn.execute(f"SELECT count(*) FROM show_chunks('{table}')").fetchone()
            assert chunks == 3
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


def test_redis_answers_ping():
    url = env_or_skip("RUNSTORE_TEST_REDIS_URL")
    redis = pytest.importorskip("redis")

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_s3_put_get_delete():
    endpoint = env_or_skip("RUNSTORE_TEST_S3_ENDPOINT")
    bucket = env_or_skip("RUNSTORE_TEST_S3_BUCKET")
    access_key = env_or_skip("RUNSTORE_TEST_S3_ACCESS_KEY")
    secret_key = env_or_skip("RUNSTORE_TEST_S3_SECRET_KEY")
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    key = f"smoke/{uuid.uuid4().hex}.txt"
    body = b"runstore smoke test\n"

    s3.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
