"""Request-rate quotas: token buckets per API token (or session user) and per workspace, 429 over them.

Every test runs against the database bucket store (both databases) unless it says Redis; the
Redis test uses the real Redis of ``var/services.env`` (RUNSTORE_TEST_REDIS_URL).
"""

import logging
import os
import time
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import RateBucket

from .conftest import client_for

LIST = "/api/v1/workspaces/"  # names no workspace
PROJECTS = "/api/v1/workspaces/acme/projects/"  # names the workspace acme


@pytest.fixture(autouse=True)
def database_buckets(settings):
    settings.RUNSTORE_RATE_LIMIT_REDIS_URL = ""
    settings.CELERY_BROKER_URL = "filesystem://"
    # Slow enough that a test's requests never earn a token back unless it waits for one.
    settings.RUNSTORE_QUOTA_REQUESTS_PER_SECOND = 0.2
    settings.RUNSTORE_QUOTA_BURST = 3
    settings.RUNSTORE_QUOTA_WORKSPACE_REQUESTS_PER_SECOND = None


def _exhaust(client, url, burst):
    """Send ``burst`` requests (all allowed) and return the next one's response."""
    for sent in range(burst):
        response = client.get(url)
        assert response.status_code == 200, (sent, response.content)
    return client.get(url)


def _assert_rate_limited(response, naming):
    assert response.status_code == 429
    body = response.json()["error"]
    assert body["status"] == 429 and body["code"] == "rate_limited"
    assert naming in body["message"] and "retry in" in body["message"]
    retry_after = int(response["Retry-After"])
    assert retry_after >= 1 and body["retry_after"] == retry_after
    assert response["RateLimit-Remaining"] == "0"
    assert int(response["RateLimit-Reset"]) >= retry_after
    return retry_after


def test_over_the_token_bucket_answers_429_with_retry_after_and_ratelimit_headers(owner, workspace):
    client = client_for(owner)
    remaining = []
    for _ in range(3):
        response = client.get(LIST)
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == "3"
        remaining.append(int(response["RateLimit-Remaining"]))
        assert int(response["RateLimit-Reset"]) >= 1
    assert remaining == [2, 1, 0]
    refused = client.get(LIST)
    token = ApiToken.objects.get(user=owner)
    assert 1 <= _assert_rate_limited(refused, f"API token {token.prefix}") <= 5  # 1 token at 0.2/s
    assert refused["RateLimit-Limit"] == "3"


def test_the_bucket_refills_after_waiting_retry_after(settings, owner, workspace):
    settings.RUNSTORE_QUOTA_REQUESTS_PER_SECOND = 0.5
    settings.RUNSTORE_QUOTA_BURST = 2
    client = client_for(owner)
    refused = _exhaust(client, LIST, 2)
    retry_after = _assert_rate_limited(refused, "API token")
    time.sleep(retry_after + 0.05)
    assert client.get(LIST).status_code == 200


def test_each_token_has_its_own_bucket(owner, contributor, workspace):
    first, second, other_user = client_for(owner), client_for(owner), client_for(contributor)
    _assert_rate_limited(_exhaust(first, LIST, 3), "API token")
    assert second.get(LIST).status_code == 200
    assert other_user.get(LIST).status_code == 200


def test_session_api_calls_take_from_the_users_bucket(owner, workspace):
    client = APIClient()
    client.force_login(owner)
    _assert_rate_limited(_exhaust(client, LIST, 3), "user owner")


def test_workspace_bucket_limits_all_tokens_of_the_workspace_together(settings, owner, contributor, project):
    settings.RUNSTORE_QUOTA_REQUESTS_PER_SECOND = 100.0
    settings.RUNSTORE_QUOTA_BURST = 200
    project_services.set_quota(project.workspace, by=None, workspace_requests_per_second=1)
    # The workspace's burst scales with its rate as a token's does: 1/s x (200 / 100/s) = 2.
    owners, contributors = client_for(owner), client_for(contributor)
    assert owners.get(PROJECTS).status_code == 200
    assert contributors.get(PROJECTS).status_code == 200
    refused = owners.get(PROJECTS)
    _assert_rate_limited(refused, "workspace acme")
    assert refused["RateLimit-Limit"] == "2"
    assert contributors.get("/api/v1/runs/acme/vision/VIS-1/").status_code == 429  # a run of acme names it too
    assert contributors.get(LIST).status_code == 200  # names no workspace: the token's own bucket only


def test_workspace_bucket_applies_to_a_token_bound_to_the_workspace(settings, owner, workspace):
    settings.RUNSTORE_QUOTA_REQUESTS_PER_SECOND = 100.0
    settings.RUNSTORE_QUOTA_BURST = 200
    project_services.set_quota(workspace, by=None, workspace_requests_per_second=1)
    _, raw = project_services.issue_token(owner, name="ci", scope="read", workspace=workspace, by=owner)
    bound = APIClient()
    bound.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    _assert_rate_limited(_exhaust(bound, LIST, 2), "workspace acme")


def test_the_workspace_quota_overrides_the_default_rate(owner, workspace):
    project_services.set_quota(workspace, by=None, requests_per_second=0.1, burst=6)
    generous, default = client_for(owner), client_for(owner)
    _assert_rate_limited(_exhaust(generous, PROJECTS, 6), "API token")
    assert generous.get(PROJECTS)["RateLimit-Limit"] == "6"
    _assert_rate_limited(_exhaust(default, LIST, 3), "API token")  # no workspace named: the default burst


def test_anonymous_requests_and_health_checks_are_not_throttled(settings, workspace):
    settings.RUNSTORE_QUOTA_BURST = 1
    anonymous = APIClient()
    for _ in range(4):
        response = anonymous.get(LIST)
        assert response.status_code in (401, 403) and "RateLimit-Limit" not in response
        assert anonymous.get("/healthz").status_code == 200
    assert not RateBucket.objects.exists()


def test_a_failing_bucket_store_lets_requests_through_with_a_warning(settings, owner, workspace, caplog):
    settings.RUNSTORE_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.RUNSTORE_QUOTA_BURST = 1
    client = client_for(owner)
    with caplog.at_level(logging.WARNING, logger="projects.throttling"):
        for _ in range(3):
            response = client.get(LIST)
            assert response.status_code == 200 and "RateLimit-Limit" not in response
    assert any("not enforced" in record.getMessage() for record in caplog.records)


@pytest.mark.skipif(not os.environ.get("RUNSTORE_TEST_REDIS_URL"), reason="RUNSTORE_TEST_REDIS_URL not set")
def test_redis_buckets_refuse_over_the_burst_and_refill(settings, owner, contributor, workspace):
    settings.RUNSTORE_RATE_LIMIT_REDIS_URL = os.environ["RUNSTORE_TEST_REDIS_URL"]
    settings.RUNSTORE_RATE_LIMIT_KEY_PREFIX = f"runstore-test:{uuid.uuid4().hex}:"
    client = client_for(owner)
    assert client.get(LIST)["RateLimit-Remaining"] == "2"
    retry_after = _assert_rate_limited(_exhaust(client, LIST, 2), "API token")
    assert client_for(contributor).get(LIST).status_code == 200
    assert not RateBucket.objects.exists()  # kept in Redis, not in the database
    time.sleep(retry_after + 0.05)
    assert client.get(LIST).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_buckets_taken_in_their_own_transaction_refuse_over_the_burst_and_leave_later_commits_durable(
    settings, owner, workspace
):
    """Outside a test transaction, as in production: the take commits on its own (on PostgreSQL with
    synchronous_commit off for that transaction only, never for the request's own writes)."""
    from django.db import connection

    settings.RUNSTORE_QUOTA_REQUESTS_PER_SECOND = 0.001  # no token earned back on a slow machine
    client = client_for(owner)
    _assert_rate_limited(_exhaust(client, LIST, 3), "API token")
    assert RateBucket.objects.filter(tokens__lt=1).exists()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
