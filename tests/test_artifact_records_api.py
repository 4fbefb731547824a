"""The REST API of a workspace's artifacts and of the records for compliance: the workspace-wide
artifact list, a version's lineage archive, and GDPR erasures (listed runs, or every run that consumed
a version) with their records; each scoped by the permission module."""

import io
import json
import zipfile

import pytest

from projects import services as project_services
from projects.models import AuditEvent, ProjectRole
from runs import services as run_services
from runs.models import Erasure, Run

from .conftest import client_for
from .roles import role_matrix
from .test_artifacts import DATA_V1, DATA_V2, listing, track

LIST = "/api/v1/workspaces/acme/artifacts/"
ERASURES = "/api/v1/erasures/"


@pytest.fixture(autouse=True)
def local_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


@pytest.fixture
def shelf(owner, project, run):
    """In acme: "tabular" v1 produced by ``run`` (VIS-1) and consumed by VIS-2; v2 produced in the
    project nlp, which only owner reads; "labels" consumed by VIS-2."""
    nlp = project_services.create_project(owner, project.workspace, "nlp", key="NLP")
    consumer, _ = run_services.create_run(owner, project, name="train")
    hidden, _ = run_services.create_run(owner, nlp, name="prep v2")
    track(owner, run, "data", DATA_V1, role="output", name="tabular")
    track(owner, consumer, "data/train", DATA_V1, name="tabular")
    track(owner, consumer, "data/labels", {"labels.csv": b"id,label\n"}, name="labels", seq=1)
    track(owner, hidden, "data", DATA_V2, role="output", name="tabular")
    return {"consumer": consumer, "hidden": hidden, "nlp": nlp}


def test_the_artifact_list_counts_only_runs_the_caller_may_view(shelf, owner_api, viewer, api):
    body = api(viewer).get(LIST).json()
    assert body["count"] == 2
    rows = {r["name"]: r for r in body["results"]}
    tabular = rows["tabular"]
    assert (tabular["versions"], tabular["consumers"], tabular["producers"]) == (1, 1, 1)
    assert tabular["latest"]["hash"] == listing(DATA_V1)[0] and tabular["size"] == 8
    assert tabular["latest"]["file_count"] == 2
    # owner also reads nlp, where v2 was produced: the newest version, one more producer, both sizes
    tabular = {r["name"]: r for r in owner_api.get(LIST).json()["results"]}["tabular"]
    assert (tabular["versions"], tabular["consumers"], tabular["producers"]) == (2, 1, 2)
    assert tabular["latest"]["hash"] == listing(DATA_V2)[0] and tabular["size"] == 8 + 10


def test_the_artifact_list_filters_by_name_and_pages(shelf, owner_api):
    assert [r["name"] for r in owner_api.get(LIST + "?name=TAB").json()["results"]] == ["tabular"]
    first = owner_api.get(LIST + "?limit=1").json()
    assert first["count"] == 2 and [r["name"] for r in first["results"]] == ["labels"] and first["next"]
    second = owner_api.get(first["next"]).json()
    assert [r["name"] for r in second["results"]] == ["tabular"] and second["next"] is None
    bad = owner_api.get(LIST + "?name=" + "x" * 201)
    assert bad.status_code == 400 and "name" in json.dumps(bad.json())


def test_the_artifact_list_answers_each_role(world, owner, run):
    track(owner, run, "data", DATA_V1, name="tabular")
    responses = role_matrix(
        world,
        lambda client: client.get(LIST),
        {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401},
    )
    assert [r["name"] for r in responses["viewer"].json()["results"]] == ["tabular"]


def test_a_stranger_learns_nothing_of_another_workspaces_artifacts(shelf, stranger, api):
    project_services.create_workspace(stranger, "secret", "Secret")
    assert api(stranger).get(LIST).status_code == 404
    assert api(stranger).get("/api/v1/workspaces/secret/artifacts/").json()["results"] == []


def test_the_artifact_list_reads_a_fixed_number_of_statements(
    owner, project, run, owner_api, django_assert_max_num_queries
):
    for i in range(3):
        track(owner, run, f"data/set{i}", {f"{i}.csv": bytes([i]) * 3}, name=f"set-{i}", seq=i)
    with django_assert_max_num_queries(30) as few:
        assert owner_api.get(LIST).json()["count"] == 3
    many, _ = run_services.create_run(owner, project, name="many")
    for i in range(3, 30):
        track(owner, many, f"data/set{i}", {f"{i}.csv": bytes([i]) * 3}, name=f"set-{i}", seq=i)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert owner_api.get(LIST).json()["count"] == 30


def test_the_lineage_archive_of_a_version_downloads_from_the_api(shelf, owner_api, viewer, api, stranger):
    digest = listing(DATA_V1)[0]
    url = f"/api/v1/workspaces/acme/artifact-versions/{digest}/lineage.zip"
    response = owner_api.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["version"]["hash"] == digest
    assert [link["run"]["id"] for link in manifest["consumed_by"]] == ["VIS-2"]
    assert AuditEvent.objects.filter(action="export.lineage").exists()
    assert api(stranger).get(url).status_code == 404
    hidden = f"/api/v1/workspaces/acme/artifact-versions/{listing(DATA_V2)[0]}/lineage.zip"
    assert api(viewer).get(hidden).status_code == 404  # produced only in nlp, which viewer cannot read


def test_an_erasure_through_the_api_deletes_the_runs_and_its_record_says_what_went(shelf, owner, owner_api, run):
    consumer = shelf["consumer"]
    response = owner_api.post(
        ERASURES, {"runs": [str(consumer.uuid), "acme/vision/VIS-2"], "reason": "GDPR request #7"}, format="json"
    )
    assert response.status_code == 201, response.content
    (record,) = response.json()["erasures"]
    assert [r["id"] for r in record["runs"]] == ["VIS-2"] and record["reason"] == "GDPR request #7"
    assert record["actor"] == "owner" and record["project"] == "acme/vision" and "fields" in record["counts"]
    assert not Run.objects.filter(pk=consumer.pk).exists() and Run.objects.filter(pk=run.pk).exists()
    assert owner_api.get(f"{ERASURES}{record['id']}/").json() == record
    listed = owner_api.get(ERASURES + "?project=acme/vision").json()
    assert [r["id"] for r in listed["results"]] == [record["id"]]


def test_an_erasure_of_runs_of_two_projects_writes_a_record_per_project(shelf, owner_api, run):
    body = {"runs": [str(run.uuid), str(shelf["hidden"].uuid)], "reason": "consent withdrawn"}
    response = owner_api.post(ERASURES, body, format="json")
    assert response.status_code == 201
    assert sorted(r["project"] for r in response.json()["erasures"]) == ["acme/nlp", "acme/vision"]
    assert Erasure.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"runs": ["acme/vision/VIS-1"], "reason": "   "}, 400, "reason"),
        ({"runs": ["acme/vision/VIS-1"]}, 400, "reason"),
        ({"runs": [], "reason": "x"}, 400, "runs"),
        ({"runs": ["not a run"], "reason": "x"}, 400, "runs"),
        ({"runs": ["acme/vision/VIS-99"], "reason": "x"}, 404, "runs"),
        ({"runs": ["acme/vision/VIS-1"], "reason": "x" * 1001}, 400, "reason"),
    ],
)
def test_a_bad_erasure_request_deletes_nothing_and_names_the_field(owner_api, run, body, status, field):
    response = owner_api.post(ERASURES, body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["field"] == field
    assert Run.objects.filter(pk=run.pk).exists() and not Erasure.objects.exists()


def test_only_those_who_manage_every_project_may_erase_and_refusals_delete_nothing(
    world, shelf, owner, viewer, api, run
):
    body = {"runs": [str(run.uuid)], "reason": "x"}
    role_matrix(
        world,
        lambda client: client.post(ERASURES, body, format="json"),
        {"owner": 201, "contributor": 403, "viewer": 403, "stranger": 404, "anonymous": 401},
        check={r: (lambda response: Run.objects.filter(pk=run.pk).exists()) for r in ("contributor", "viewer")},
    )
    # managing one project of two is not enough: nothing of either goes
    project_services.set_project_role(shelf["nlp"], viewer, ProjectRole.OWNER, by=owner)
    both = {"runs": [str(shelf["hidden"].uuid), str(shelf["consumer"].uuid)], "reason": "x"}
    assert api(viewer).post(ERASURES, both, format="json").status_code == 403
    assert Run.objects.filter(pk__in=[shelf["hidden"].pk, shelf["consumer"].pk]).count() == 2


def test_an_erasure_record_is_read_by_those_who_manage_its_project(world, owner, run):
    doomed, _ = run_services.create_run(owner, run.project, name="doomed")
    record = run_services.erase_runs(owner, [doomed], reason="test", subject="run VIS-2")
    role_matrix(
        world,
        lambda client: client.get(f"{ERASURES}{record.pk}/"),
        {"owner": 200, "contributor": 403, "viewer": 403, "stranger": 404, "anonymous": 401},
    )
    role_matrix(
        world,
        lambda client: client.get(ERASURES + "?project=acme/vision"),
        {"owner": 200, "contributor": 403, "viewer": 403, "stranger": 404, "anonymous": 401},
    )
    assert client_for(owner).get(f"{ERASURES}999999/").status_code == 404


def test_erasing_every_consumer_of_a_version_through_the_api(shelf, owner, owner_api, contributor, api, run):
    digest = listing(DATA_V1)[0]
    url = f"/api/v1/workspaces/acme/artifact-versions/{digest}/erase-consumers"
    plan = owner_api.get(url).json()
    assert plan["count"] == 1 and [r["id"] for r in plan["runs"]] == ["VIS-2"] and plan["name"] == "tabular"
    assert api(contributor).post(url, {"reason": "x"}, format="json").status_code == 403
    no_reason = owner_api.post(url, {"reason": ""}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["error"]["field"] == "reason"
    assert Run.objects.filter(pk=shelf["consumer"].pk).exists()
    response = owner_api.post(url, {"reason": "consent withdrawn"}, format="json")
    assert response.status_code == 201
    (record,) = response.json()["erasures"]
    assert record["subject"] == f"runs that consumed tabular@{digest[:12]}"
    assert not Run.objects.filter(pk=shelf["consumer"].pk).exists()
    assert Run.objects.filter(pk=run.pk).exists()  # the producer stays
    assert (
        owner_api.get("/api/v1/workspaces/acme/artifact-versions/" + "f" * 64 + "/erase-consumers").status_code == 404
    )
