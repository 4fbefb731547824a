"""What every batch and every run created pays before and after its own work: the statements stay
few (token, binding, rate bucket, run, rights, quota read together), and none of the savings lets a
revoked token, a removed member, a lowered quota or a token's workspace binding slip through."""

import pytest

from accounts import services as account_services
from projects import services as project_services
from runs.models import Run
from runs.webhooks import services as webhook_services
from runs.webhooks.models import Delivery
from tests.conftest import client_for

SERIES = 20


def _ops(seq: int) -> list[dict]:
    steps = list(range(seq * 100, seq * 100 + 100))
    return [
        {"op": "append", "path": f"train/s{s}", "values": [0.5] * 100, "steps": steps, "timestamps": [1.0 + seq] * 100}
        for s in range(SERIES)
    ]


def _batch(client, run_uuid, seq: int):
    body = {"stream": "overhead", "seq": seq, "ops": _ops(seq)}
    return client.post(f"/api/v1/runs/{run_uuid}/batch", body, format="json")


def _create(client, name: str, **extra):
    return client.post("/api/v1/runs/", {"project": "acme/vision", "name": name, **extra}, format="json")


# Token with its binding (1), rate bucket (1), run with project, workspace and quota (1), rights (1),
# then the batch's own work: claim, touch, fields, attribute updates, points, roll-up cursors and the
# savepoint pair (8: float appends of less than a block ask no point counts, their roll-up task packs
# them), and the webhook look-up after the commit (1).
BATCH_STATEMENTS = 13
# Token with its binding (1), rate bucket (1), project with workspace and quota (1), rights (1, read
# once for the look-up and the write check), savepoint pair (2), run number (1), run (1), its tags
# and the project's field list (2), webhook look-up after the commit (1); the response is built from
# the run at hand.
CREATE_STATEMENTS = 11


def test_a_batch_costs_a_bounded_number_of_statements(
    owner_api, project, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    run_uuid = _create(owner_api, "warm").json()["uuid"]
    assert _batch(owner_api, run_uuid, 0).status_code == 200  # creates the series' fields
    with django_assert_max_num_queries(BATCH_STATEMENTS), django_capture_on_commit_callbacks(execute=True):
        response = _batch(owner_api, run_uuid, 1)
    assert response.status_code == 200, response.content
    assert response.json()["points"] == SERIES * 100


def test_creating_a_run_costs_a_bounded_number_of_statements(
    owner_api, project, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    assert _create(owner_api, "warm").status_code == 201  # the token's last use is recorded once a minute
    with django_assert_max_num_queries(CREATE_STATEMENTS), django_capture_on_commit_callbacks(execute=True):
        response = _create(owner_api, "counted", tags=["b", "a", "b"])
    assert response.status_code == 201, response.content
    created = response.json()
    # The answer built from the run at hand is the one a fresh read gives (but the time it has run).
    fresh = owner_api.get(f"/api/v1/runs/{created['uuid']}/").json()
    assert {**fresh, "running_time": None} == {**created, "running_time": None}
    assert created["tags"] == ["a", "b"] and created["project"] == "acme/vision" and created["owner"] == "owner"


def test_a_revoked_token_is_refused_on_its_next_batch(owner, project):
    token_client = client_for(owner)
    run_uuid = _create(token_client, "revoked").json()["uuid"]
    assert _batch(token_client, run_uuid, 0).status_code == 200
    token = owner.api_tokens.get(name="test")
    account_services.revoke_token(token, by=owner)
    refused = _batch(token_client, run_uuid, 1)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "token_revoked"


def test_a_removed_member_may_not_send_the_next_batch(owner, contributor, project):
    member = client_for(contributor)
    run_uuid = _create(member, "leaving").json()["uuid"]
    assert _batch(member, run_uuid, 0).status_code == 200
    project_services.remove_project_grant(project, contributor, by=owner)
    project_services.remove_membership(project.workspace, contributor, by=owner)
    assert _batch(member, run_uuid, 1).status_code == 404
    assert _create(member, "again").status_code == 404


def test_a_lowered_storage_quota_refuses_the_next_batch(owner_api, owner, project):
    run_uuid = _create(owner_api, "quota").json()["uuid"]
    assert _batch(owner_api, run_uuid, 0).status_code == 200
    project_services.set_quota(project.workspace, by=None, storage_bytes=1)
    # Usage passes a limit by at most the one write admitted last (projects.quotas): nothing was
    # counted before there was a limit, so the first batch after it is the one let over.
    assert _batch(owner_api, run_uuid, 1).status_code == 200
    refused = _batch(owner_api, run_uuid, 2)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["quota"] == "storage_bytes"


def test_a_lowered_run_quota_refuses_the_next_run(owner_api, owner, project):
    assert _create(owner_api, "first").status_code == 201
    project_services.set_quota(project.workspace, by=None, runs_per_project=Run.objects.filter(project=project).count())
    refused = _create(owner_api, "over")
    assert refused.status_code == 403
    assert refused.json()["error"]["quota"] == "runs_per_project"


def test_a_token_bound_to_another_workspace_reaches_no_run_here(owner, project):
    elsewhere = project_services.create_workspace(owner, "elsewhere", "Elsewhere")
    _, raw = project_services.issue_token(owner, name="bound", scope="write", workspace=elsewhere, by=owner)
    run_uuid = _create(client_for(owner), "here").json()["uuid"]
    bound = client_for(None)
    bound.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert _batch(bound, run_uuid, 0).status_code == 404
    assert _create(bound, "here-too").status_code == 404


def test_a_webhook_added_after_a_project_had_none_gets_the_next_event(
    owner_api, owner, project, settings, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(webhook_services, "_queue", lambda *args, **kwargs: None)
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with django_capture_on_commit_callbacks(execute=True):
        run_uuid = _create(owner_api, "before").json()["uuid"]  # the project is found without webhooks
        assert _batch(owner_api, run_uuid, 0).status_code == 200
    hook = webhook_services.create_webhook(
        owner, project, url="http://127.0.0.1:9/hook", events=["run.created", "run.query_matched"], query="train/s0 > 0"
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert _create(owner_api, "after").status_code == 201
        assert _batch(owner_api, run_uuid, 1).status_code == 200
    assert sorted(Delivery.objects.filter(webhook=hook).values_list("event", flat=True)) == [
        "run.created",
        "run.query_matched",
    ]


@pytest.mark.parametrize("scope, status", [("read", 403), ("write", 200)])
def test_the_token_scope_still_caps_a_batch(owner, project, scope, status):
    run_uuid = _create(client_for(owner), "scoped").json()["uuid"]
    _, raw = project_services.issue_token(owner, name="scoped", scope=scope, by=owner)
    scoped = client_for(None)
    scoped.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert _batch(scoped, run_uuid, 0).status_code == status


def test_a_webhook_added_by_another_process_gets_events_within_two_seconds(
    owner_api, project, monkeypatch, django_capture_on_commit_callbacks
):
    import time as real_time

    from runs.webhooks import events
    from runs.webhooks.models import Webhook

    monkeypatch.setattr(webhook_services, "_queue", lambda *args, **kwargs: None)
    with django_capture_on_commit_callbacks(execute=True):
        assert _create(owner_api, "before").status_code == 201  # this process finds no webhook
    # Saved without this process hearing of it, as another web process's save would be.
    (hook,) = Webhook.objects.bulk_create(
        [Webhook(project=project, url="http://127.0.0.1:9/h", events=["run.created"])]
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert _create(owner_api, "within").status_code == 201
    assert not Delivery.objects.filter(webhook=hook).exists()  # the documented window

    class Later:
        @staticmethod
        def monotonic():
            return real_time.monotonic() + events.NO_HOOKS_SECONDS

    monkeypatch.setattr(events, "time", Later)
    with django_capture_on_commit_callbacks(execute=True):
        assert _create(owner_api, "after").status_code == 201
    assert list(Delivery.objects.filter(webhook=hook).values_list("event", flat=True)) == ["run.created"]
