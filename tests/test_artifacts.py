"""Artifact versions: what a batch's ``track`` operations and uploads record, and the scoped queries
over them (runs that consumed a version, what a run produced, the chain back to the data)."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects import services as project_services
from projects.models import ProjectRole
from runs import services
from runs.artifacts.models import ArtifactVersion, RunArtifact

from .conftest import batch, run_url
from .roles import role_matrix

READ = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401}


def listing(files: dict[str, bytes]) -> tuple[str, list[dict]]:
    rows = sorted((name, hashlib.sha256(content).hexdigest(), len(content)) for name, content in files.items())
    if len(rows) == 1:
        return rows[0][1], [{"path": rows[0][0], "hash": rows[0][1], "size": rows[0][2]}]
    overall = hashlib.sha256("".join(f"{r}\0{h}\0{n}\n" for r, h, n in rows).encode()).hexdigest()
    return overall, [{"path": r, "hash": h, "size": n} for r, h, n in rows]


def track_op(path, files, *, role=None, name=None):
    digest, rows = listing(files)
    op = {"op": "track", "path": path, "hash": digest, "files": rows, "location": "file:///data"}
    if role:
        op["role"] = role
    if name:
        op["name"] = name
    return op


def track(user, run, path, files, *, role=None, name=None, seq=0):
    services.apply_batch(user, run, stream="track", seq=seq, raw_ops=[track_op(path, files, role=role, name=name)])
    return listing(files)[0]


def upload_set(user, run, path, files: dict[str, bytes]):
    refs = []
    for name, content in files.items():
        uploaded = SimpleUploadedFile(name, content)
        uploaded.sha256 = hashlib.sha256(content).hexdigest()
        services.store_upload(user, run, uploaded)
        refs.append({"relpath": name, "sha256": uploaded.sha256})
    services.apply_batch(user, run, stream="up", seq=0, raw_ops=[{"op": "upload_set", "path": path, "files": refs}])


DATA_V1 = {"a.csv": b"1,2\n", "b.csv": b"3,4\n"}
DATA_V2 = {"a.csv": b"1,2\n", "b.csv": b"3,5\n", "c.csv": b"6\n"}


def test_track_records_an_input_version_with_its_file_list_once_per_retry(owner_api, run):
    op = track_op("data/train", DATA_V1, name="tabular")
    assert batch(owner_api, run, [op], seq=7).status_code == 200
    assert batch(owner_api, run, [op], seq=7).json()["duplicate"] is True
    version = ArtifactVersion.objects.get()
    assert version.hash == op["hash"] and version.file_count == 2 and version.size == 8
    assert version.files == [["a.csv", op["files"][0]["hash"], 4], ["b.csv", op["files"][1]["hash"], 4]]
    assert version.artifact.name == "tabular" and version.first_run == run
    body = owner_api.get(run_url(run, "artifacts").rstrip("/")).json()
    assert [(i["path"], i["role"], i["name"], i["hash"]) for i in body["inputs"]] == [
        ("data/train", "input", "tabular", op["hash"])
    ]
    assert body["outputs"] == []


def test_tracking_a_field_again_replaces_its_link_and_versions_are_shared(owner, run, project):
    track(owner, run, "data/train", DATA_V1)
    track(owner, run, "data/train", DATA_V2, seq=1)
    other, _ = services.create_run(owner, project, name="other")
    track(owner, other, "dataset", DATA_V2)
    assert ArtifactVersion.objects.count() == 2
    assert RunArtifact.objects.filter(run=run).get().version.hash == listing(DATA_V2)[0]
    assert RunArtifact.objects.filter(version__hash=listing(DATA_V2)[0]).count() == 2


def test_uploaded_file_sets_are_outputs_matching_a_tracked_copy(owner, run, project):
    upload_set(owner, run, "model/files", DATA_V1)
    consumer, _ = services.create_run(owner, project, name="eval")
    track(owner, consumer, "model", DATA_V1)
    output = RunArtifact.objects.get(run=run)
    assert output.role == "output" and output.path == "model/files" and output.version.kind == "uploaded"
    assert RunArtifact.objects.get(run=consumer).version == output.version


def test_a_track_with_too_many_files_is_a_413_naming_files(owner_api, run, settings):
    settings.RUNSTORE_MAX_ARTIFACT_FILES = 2
    response = batch(owner_api, run, [track_op("data", {"a": b"1", "b": b"2", "c": b"3"})])
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["field"] == "ops[0].files" and error["code"] == "too_many_files" and "at most 2" in error["message"]
    assert not ArtifactVersion.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": "both"}, "role"),
        ({"hash": ""}, "hash"),
        ({"files": [{"path": "a", "hash": "x", "size": -1}]}, "files[0].size"),
        ({"name": 5}, "name"),
        ({"files": [{"path": "a\x00b", "hash": "x", "size": 1}]}, "files[0].path"),
        ({"metadata": {"note": "a\x00"}}, "metadata"),
        ({"location": "file:///x\x00"}, "location"),
    ],
)
def test_a_malformed_track_is_a_400_naming_the_field(owner_api, run, change, field):
    response = batch(owner_api, run, [{**track_op("data", DATA_V1), **change}])
    assert response.status_code == 400 and response.json()["error"]["field"] == f"ops[0].{field}"


def test_a_failing_batch_records_no_version(owner_api, run):
    ops = [
        {"op": "assign", "path": "x", "value": 1},
        track_op("data", DATA_V1),
        {"op": "assign", "path": "x", "value": "text"},  # type conflict: the batch rolls back
    ]
    assert batch(owner_api, run, ops).status_code == 409
    assert not ArtifactVersion.objects.exists() and not RunArtifact.objects.exists()


def test_deleting_a_tracked_field_drops_its_link(owner, run):
    track(owner, run, "data", DATA_V1)
    services.apply_batch(owner, run, stream="d", seq=0, raw_ops=[{"op": "delete", "path": "data"}])
    assert not RunArtifact.objects.exists()


@pytest.fixture
def chain_world(owner, project, stranger):
    """prep (VIS) produces data v1 from raw data; train (VIS-other project) consumes it and produces a
    model; eval consumes the model. A hidden project (stranger's) produced the raw data."""
    ws = project.workspace
    other_project = project_services.create_project(owner, ws, "nlp", key="NLP")
    hidden_ws = project_services.create_workspace(stranger, "secret", "Secret")
    hidden_project = project_services.create_project(stranger, hidden_ws, "raw", key="RAW")
    source, _ = services.create_run(stranger, hidden_project, name="collect")
    prep, _ = services.create_run(owner, project, name="prep")
    train, _ = services.create_run(owner, other_project, name="train")
    evaluate, _ = services.create_run(owner, project, name="eval")
    raw = {"raw.bin": b"raw data"}
    model = {"model.pt": b"weights"}
    track(stranger, source, "raw", raw, role="output")
    track(owner, prep, "raw", raw)
    track(owner, prep, "data", DATA_V1, role="output", name="tabular", seq=1)
    track(owner, train, "data/train", DATA_V1, name="tabular")
    track(owner, train, "model", model, role="output", seq=1)
    track(owner, evaluate, "model", model)
    return {"prep": prep, "train": train, "eval": evaluate, "source": source, "other_project": other_project}


def test_the_chain_from_a_model_back_to_its_data_crosses_projects_the_caller_may_read(
    chain_world, owner_api, django_assert_max_num_queries
):
    with django_assert_max_num_queries(20):
        body = owner_api.get(run_url(chain_world["eval"], "lineage").rstrip("/")).json()
    runs = {r["id"]: r for r in body["runs"]}
    assert list(runs) == ["VIS-2", "NLP-1", "VIS-1"]
    assert runs["VIS-2"]["inputs"][0]["produced_by"][0]["run"] == "NLP-1"
    assert runs["NLP-1"]["inputs"][0]["produced_by"][0]["run"] == "VIS-1"
    # prep's raw data came from a project owner cannot read: no producer, no trace of it
    assert runs["VIS-1"]["inputs"][0]["produced_by"] == [] and "RAW" not in str(body)


def test_the_chain_stops_at_projects_a_viewer_cannot_read(chain_world, viewer, api):
    body = api(viewer).get(run_url(chain_world["eval"], "lineage").rstrip("/")).json()
    assert [r["id"] for r in body["runs"]] == ["VIS-2"]  # the producer lives in nlp, which viewer cannot read
    assert body["runs"][0]["inputs"][0]["produced_by"] == []


def test_lineage_depth_is_bounded_and_checked(chain_world, owner_api):
    url = run_url(chain_world["eval"], "lineage").rstrip("/")
    assert [r["id"] for r in owner_api.get(url + "?depth=1").json()["runs"]] == ["VIS-2", "NLP-1"]
    response = owner_api.get(url + "?depth=500")
    assert response.status_code == 400 and response.json()["error"]["field"] == "depth"


def test_runs_that_consumed_a_version_and_the_run_that_produced_it(chain_world, owner_api):
    digest = listing(DATA_V1)[0]
    body = owner_api.get(f"/api/v1/artifact-versions/{digest}").json()
    assert [link["run"]["id"] for link in body["consumed_by"]] == ["NLP-1"]
    assert [link["run"]["id"] for link in body["produced_by"]] == ["VIS-1"]
    assert body["name"] == "tabular" and body["file_count"] == 2
    only_inputs = owner_api.get(f"/api/v1/artifact-versions/{digest}?role=input").json()
    assert only_inputs["produced_by"] == []
    assert owner_api.get(f"/api/v1/artifact-versions/{digest}?role=x").json()["error"]["field"] == "role"


def test_a_hash_used_only_in_other_projects_answers_as_an_unknown_one(chain_world, owner_api, api, stranger):
    raw = listing({"raw.bin": b"raw data"})[0]
    # owner's prep consumed it: owner sees their own consumer, never the stranger's producer
    body = owner_api.get(f"/api/v1/artifact-versions/{raw}").json()
    assert body["produced_by"] == [] and [link["run"]["id"] for link in body["consumed_by"]] == ["VIS-1"]
    model = listing({"model.pt": b"weights"})[0]
    hidden = api(stranger).get(f"/api/v1/artifact-versions/{model}")
    unknown = api(stranger).get(f"/api/v1/artifact-versions/{'0' * 64}")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"].replace(model, "X") == unknown.json()["error"]["message"].replace(
        "0" * 64, "X"
    )


def test_a_named_artifact_lists_its_versions_visible_to_the_caller(chain_world, owner_api, api, stranger):
    body = owner_api.get("/api/v1/artifacts/acme/tabular").json()
    assert [v["hash"] for v in body["versions"]] == [listing(DATA_V1)[0]]
    assert {link["run"]["id"] for link in body["versions"][0]["runs"]} == {"VIS-1", "NLP-1"}
    assert api(stranger).get("/api/v1/artifacts/acme/tabular").status_code == 404
    assert owner_api.get("/api/v1/artifacts/acme/nothing").status_code == 404


def test_artifact_endpoints_answer_each_role(world, owner, run):
    track(owner, run, "data", DATA_V1, name="tabular")
    digest = listing(DATA_V1)[0]
    for url in (
        run_url(run, "artifacts").rstrip("/"),
        run_url(run, "lineage").rstrip("/"),
        f"/api/v1/artifact-versions/{digest}",
        "/api/v1/artifacts/acme/tabular",
    ):
        role_matrix(world, lambda client, url=url: client.get(url), READ)


def test_a_viewer_granted_later_sees_the_other_projects_runs(chain_world, viewer, api, owner):
    project_services.set_project_role(chain_world["other_project"], viewer, ProjectRole.VIEWER, by=owner)
    body = api(viewer).get(run_url(chain_world["eval"], "lineage").rstrip("/")).json()
    assert [r["id"] for r in body["runs"]] == ["VIS-2", "NLP-1", "VIS-1"]


def names(client, query):
    response = client.get("/api/v1/runs/", {"project": "acme/vision", "columns": "sys/name", "query": query})
    assert response.status_code == 200, response.content
    return sorted(r["name"] for r in response.json()["results"])


def test_the_query_language_finds_runs_by_the_versions_they_consumed_and_produced(chain_world, owner_api, owner):
    v1 = listing(DATA_V1)[0]
    upload_set(owner, chain_world["eval"], "report", {"r.txt": b"report"})
    assert names(owner_api, 'outputs contains artifact "tabular"') == ["prep"]
    assert names(owner_api, 'inputs contains artifact "tabular"') == []  # train lives in nlp
    assert names(owner_api, f'outputs contains hash "{v1}"') == ["prep"]
    assert names(owner_api, f'data:hash = "{v1}"') == ["prep"]
    assert names(owner_api, f'data:hash in ("{v1}", "x")') == ["prep"]
    assert names(owner_api, f'data:hash != "{v1}"') == []
    assert names(owner_api, "exists model:hash") == ["eval"]
    report = hashlib.sha256(b"report").hexdigest()
    assert names(owner_api, f'report:hash = "{report}" and not inputs contains artifact "tabular"') == ["eval"]
    response = owner_api.get(
        "/api/v1/runs/", {"project": "acme/nlp", "columns": "sys/name", "query": 'inputs contains artifact "tabular"'}
    )
    assert [r["name"] for r in response.json()["results"]] == ["train"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("inputs contains artifact tabular", 'the artifact as a "string"'),
        ("data:hash > 3", "compare it with =, != or in"),
        ("data:sha = 1", "or hash"),
    ],
)
def test_a_wrong_artifact_query_is_a_400_naming_the_position(run, owner_api, query, says):
    response = owner_api.get("/api/v1/runs/", {"project": "acme/vision", "query": query})
    assert response.status_code == 400 and says in response.json()["error"]["message"]


def test_a_field_named_inputs_is_still_a_plain_string_test(owner, run, owner_api):
    services.apply_batch(owner, run, stream="p", seq=0, raw_ops=[{"op": "assign", "path": "inputs", "value": "abc"}])
    assert names(owner_api, 'inputs contains "b"') == ["baseline"]


# ---- UI ----------------------------------------------------------------------------------------

UI_PAGE = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 302}


@pytest.fixture
def ui_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def graph_url(run):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/lineage-graph"


def test_the_run_page_draws_inputs_and_outputs_with_their_producers_and_consumers(
    chain_world, ui_for, owner, django_assert_max_num_queries
):
    client = ui_for(owner)
    train = chain_world["train"]
    page = client.get(f"/w/acme/nlp/runs/{train.human_id}/").content.decode()
    assert graph_url(train) in page
    with django_assert_max_num_queries(12):
        svg = client.get(graph_url(train), HTTP_HX_REQUEST="true").content.decode()
    assert "<svg" in svg and "<html" not in svg and "style=" not in svg
    assert ">tabular</text>" in svg and ">model</text>" in svg  # the input (named) and the output
    # the producer of the input (prep) and the consumer of the output (eval), each expandable
    for other in (chain_world["prep"], chain_world["eval"]):
        assert f'hx-get="{graph_url(other)}"' in svg and f">{other.human_id}</text>" in svg
    assert "/w/acme/-/artifacts/tabular?v=" in svg


def test_the_graph_never_shows_runs_of_projects_the_viewer_cannot_read(chain_world, ui_for, viewer):
    svg = ui_for(viewer).get(graph_url(chain_world["prep"])).content.decode()
    assert ">data</text>" in svg or ">tabular</text>" in svg
    assert "NLP-" not in svg and "RAW-" not in svg and "collect" not in svg


def test_stranger_gets_404_on_the_graph_and_the_artifact_page(world, owner, run):
    track(owner, run, "data", DATA_V1, name="tabular")
    role_matrix(world, lambda client: client.get(graph_url(run)), UI_PAGE, ui=True)
    role_matrix(world, lambda client: client.get("/w/acme/-/artifacts/tabular"), UI_PAGE, ui=True)


def test_the_artifact_page_lists_versions_their_runs_and_what_changed(owner, project, ui_for, viewer):
    first, _ = services.create_run(owner, project, name="v1 user")
    second, _ = services.create_run(owner, project, name="v2 user")
    track(owner, first, "data", DATA_V1, name="tabular")
    track(owner, second, "data", DATA_V2, name="tabular")
    html = ui_for(viewer).get("/w/acme/-/artifacts/tabular").content.decode()
    v1, v2 = listing(DATA_V1)[0], listing(DATA_V2)[0]
    assert html.index(v2[:12]) < html.index(v1[:12])  # newest first
    assert f">{first.human_id}</a>" in html and f">{second.human_id}</a>" in html
    assert "1 added" in html and "0 removed" in html and "1 changed" in html
    assert "<code>c.csv</code></td><td>added" in html and "<code>b.csv</code></td><td>changed" in html
    chosen = ui_for(viewer).get(f"/w/acme/-/artifacts/tabular?v={v1}&a={v2}&b={v1}").content.decode()
    assert "1 removed" in chosen and "<code>c.csv</code></td><td>removed" in chosen
    assert ui_for(viewer).get("/w/acme/-/artifacts/nothing").status_code == 404
