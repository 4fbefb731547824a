"""Deleting a run for good (GDPR erasure) from its page: what goes (fields, series and points, files and
the stored files no one else uses), what stays (shared files, a record of the erasure), and who may."""

import pytest
from django.core.files.storage import storages
from django.test import Client

from projects.models import AuditEvent
from runs import series as series_store
from runs import services as run_services
from runs.models import Attribute, Blob, Erasure, Run

from .conftest import batch, client_for
from .test_files import upload
from .test_registry import local_blobs  # noqa: F401  (fixture)


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def erase_url(run) -> str:
    return f"/w/acme/vision/runs/{run.human_id}/erase"


@pytest.fixture
def logged(owner, project, run, local_blobs):  # noqa: F811
    """``run`` with a loss series, a parameter, its own file and a file it shares with a second run."""
    api = client_for(owner)
    own = upload(api, run, "private.csv", b"name,email\nada,ada@example.org\n").json()["sha256"]
    shared = upload(api, run, "shared.bin", b"shared weights" * 100).json()["sha256"]
    ops = [
        {"op": "append", "path": "train/loss", "values": [0.5, 0.25, 0.125]},
        {"op": "assign", "path": "parameters/lr", "value": 0.01},
        {"op": "upload", "path": "data/people", "sha256": own, "name": "private.csv"},
        {"op": "upload", "path": "model/weights", "sha256": shared, "name": "shared.bin"},
    ]
    assert batch(api, run, ops).status_code == 200
    other, _ = run_services.create_run(owner, project, name="other")
    ops = [{"op": "upload", "path": "model/weights", "sha256": shared, "name": "shared.bin"}]
    assert batch(api, other, ops).status_code == 200
    return {"run": run, "own": own, "shared": shared, "other": other}


def test_a_manager_erases_a_run_for_good_and_a_record_says_what_went(owner, logged):
    run = logged["run"]
    loss = Attribute.objects.get(run=run, path="train/loss")
    page = ui(owner).get(f"/w/acme/vision/runs/{run.human_id}/").content.decode()
    assert erase_url(run) in page
    confirm = ui(owner).get(erase_url(run))
    assert confirm.status_code == 200 and "3 points" in confirm.content.decode()

    response = ui(owner).post(erase_url(run), {"confirm": run.human_id, "reason": "GDPR request #42"})
    assert response.status_code == 302 and response["Location"] == "/w/acme/vision/"
    assert not Run.objects.filter(pk=run.pk).exists() and not Attribute.objects.filter(run_id=run.pk).exists()
    assert series_store.read_points(loss.pk, series_store.FLOAT_TABLE)["steps"] == []
    blobs = storages["blobs"]
    assert not Blob.objects.filter(pk=logged["own"]).exists()
    assert not blobs.exists(Blob(sha256=logged["own"], size=0).storage_key)
    assert blobs.exists(Blob(sha256=logged["shared"], size=0).storage_key)  # the other run still uses it
    assert Run.objects.filter(pk=logged["other"].pk).exists()

    record = Erasure.objects.get()
    assert (record.actor, record.actor_name, record.subject, record.reason) == (
        owner,
        "owner",
        f"run {run.human_id}",
        "GDPR request #42",
    )
    assert record.project_label == "acme/vision" and record.runs[0]["uuid"] == str(run.uuid)
    assert record.counts["series"] == 1 and record.counts["points"] == 3
    assert (record.counts["blobs_deleted"], record.counts["blobs_kept"]) == (1, 1)
    event = AuditEvent.objects.get(action="run.erased")
    assert event.actor == owner and event.details["erasure"] == record.pk
    with pytest.raises(ValueError):
        record.save()


def test_a_wrong_confirmation_or_no_reason_deletes_nothing(owner, logged):
    run = logged["run"]
    wrong = ui(owner).post(erase_url(run), {"confirm": "VIS-999", "reason": "x"})
    assert wrong.status_code == 400 and f"Type {run.human_id} to confirm" in wrong.content.decode()
    no_reason = ui(owner).post(erase_url(run), {"confirm": run.human_id, "reason": "  "})
    assert no_reason.status_code == 400 and "reason" in no_reason.content.decode()
    assert Run.objects.filter(pk=run.pk).exists() and not Erasure.objects.exists()
    assert Blob.objects.filter(pk=logged["own"]).exists()


def test_only_those_who_manage_the_project_may_erase(contributor, viewer, stranger, logged):
    run = logged["run"]
    for user, status in ((contributor, 403), (viewer, 403), (stranger, 404)):
        assert erase_url(run) not in ui(user).get(f"/w/acme/vision/runs/{run.human_id}/").content.decode()
        assert ui(user).get(erase_url(run)).status_code == status
        response = ui(user).post(erase_url(run), {"confirm": run.human_id, "reason": "mine"})
        assert response.status_code == status
    assert ui(None).post(erase_url(run), {"confirm": run.human_id, "reason": "x"}).status_code == 302  # to login
    assert Run.objects.filter(pk=run.pk).exists() and not Erasure.objects.exists()


def track(api, run, path, files, name):
    from runs.artifacts.services import version_hash

    digest = version_hash([(f["path"], f["hash"], f["size"]) for f in files])
    op = {"op": "track", "path": path, "hash": digest, "files": files, "name": name}
    assert batch(api, run, [op]).status_code == 200
    return digest


@pytest.fixture
def consumed(owner, project, run):
    """Version V of data set "people", consumed by ``run`` and a second run; a third run consumed another."""
    api = client_for(owner)
    files = [{"path": "people.csv", "hash": "c" * 64, "size": 10}, {"path": "more.csv", "hash": "d" * 64, "size": 5}]
    digest = track(api, run, "data/train", files, "people")
    second, _ = run_services.create_run(owner, project, name="second")
    track(api, second, "data/train", files, "people")
    third, _ = run_services.create_run(owner, project, name="third")
    track(api, third, "data/train", files[:1] + [{"path": "x.csv", "hash": "e" * 64, "size": 1}], "people")
    return {"digest": digest, "runs": [run, second], "kept": third}


def consumers_url(digest) -> str:
    return f"/w/acme/-/artifact-versions/{digest}/erase-consumers"


def test_a_manager_erases_every_run_that_consumed_a_version(owner, consumed):
    url = consumers_url(consumed["digest"])
    page = ui(owner).get(f"/w/acme/-/artifacts/people?v={consumed['digest']}").content.decode()
    assert url in page
    confirm = ui(owner).get(url).content.decode()
    assert all(r.human_id in confirm for r in consumed["runs"]) and consumed["kept"].human_id not in confirm
    response = ui(owner).post(url, {"confirm": consumed["digest"][:12], "reason": "consent withdrawn"})
    assert response.status_code == 302 and response["Location"] == "/w/acme/-/artifacts/people"
    assert not Run.objects.filter(pk__in=[r.pk for r in consumed["runs"]]).exists()
    assert Run.objects.filter(pk=consumed["kept"].pk).exists()
    record = Erasure.objects.get()
    assert record.subject == f"runs that consumed people@{consumed['digest'][:12]}" and len(record.runs) == 2
    assert record.reason == "consent withdrawn"


def test_erasing_consumers_needs_the_confirmation_and_manage(owner, contributor, stranger, consumed):
    url = consumers_url(consumed["digest"])
    wrong = ui(owner).post(url, {"confirm": "nope", "reason": "x"})
    assert wrong.status_code == 400 and "to confirm" in wrong.content.decode()
    assert ui(contributor).get(url).status_code == 403
    assert ui(contributor).post(url, {"confirm": consumed["digest"][:12], "reason": "x"}).status_code == 403
    assert ui(stranger).get(url).status_code == 404  # not even told the version exists
    assert ui(owner).get(consumers_url("f" * 64)).status_code == 404
    assert Run.objects.filter(pk__in=[r.pk for r in consumed["runs"]]).count() == 2 and not Erasure.objects.exists()
