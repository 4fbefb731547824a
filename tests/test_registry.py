"""The model registry's rules, through its service layer (``runs.registry.services``): numbering,
stages, what a version holds, who may change what, and the side effects of a stage change."""

import threading

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, connections
from django.http import Http404

from projects import services as project_services
from projects.models import AuditEvent
from runs import cleanup
from runs import services as run_services
from runs.errors import ApiError
from runs.models import Blob
from runs.registry import services as registry
from runs.registry.models import ModelVersion, RegisteredModel, Stage

from . import test_webhooks as hooks
from .conftest import batch, client_for
from .test_files import upload
from .test_webhooks import make_hook, verify

eager, receiver = hooks.eager, hooks.receiver  # fixtures

WEIGHTS = b"\x00\x01weights" * 10_000
CONFIG = b'{"layers": 12}\n'


def log_files(user, run, *, weights=WEIGHTS, config=CONFIG):
    """``model/weights`` (a file) and ``model/dir`` (a file set) on ``run``, as the client logs them."""
    api = client_for(user)
    w = upload(api, run, "model.pt", weights).json()["sha256"]
    c = upload(api, run, "config.json", config).json()["sha256"]
    ops = [
        {"op": "upload", "path": "model/weights", "sha256": w, "name": "model.pt"},
        {
            "op": "upload_set",
            "path": "model/dir",
            "files": [{"relpath": "model.pt", "sha256": w}, {"relpath": "cfg/config.json", "sha256": c}],
        },
        {"op": "assign", "path": "eval/acc", "value": 0.93},
    ]
    seq = getattr(run, "_seq", 0) + 1
    run._seq = seq
    response = batch(api, run, ops, seq=seq)
    assert response.status_code == 200, response.content
    return run


@pytest.fixture
def local_blobs(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


@pytest.fixture
def model_run(owner, run, local_blobs):
    return log_files(owner, run)


def test_versions_are_numbered_per_model_from_one(owner, model_run):
    v1 = registry.register_version(owner, model_run, "model/weights", "resnet")
    v2 = registry.register_version(owner, model_run, "model/dir", "resnet", stage="staging", description="dir")
    other = registry.register_version(owner, model_run, "model/weights", "bert")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.stage == Stage.NONE and v2.stage == Stage.STAGING
    assert v2.stage_changed_by == owner and v2.stage_changed_at is not None
    assert v1.created_by == owner and v1.run_label == model_run.human_id
    assert (v2.field_type, v2.file_count, v2.size) == ("file_set", 2, len(WEIGHTS) + len(CONFIG))
    model = RegisteredModel.objects.get(name="resnet")
    assert model.project == model_run.project and model.workspace == model_run.project.workspace
    assert str(model) == "registry/resnet"


def test_a_deleted_version_number_is_never_given_again(owner, model_run):
    registry.register_version(owner, model_run, "model/weights", "resnet")
    v2 = registry.register_version(owner, model_run, "model/weights", "resnet")
    registry.delete_version(owner, v2)
    assert registry.register_version(owner, model_run, "model/weights", "resnet").version == 3


def test_a_version_keeps_its_files_when_the_run_field_is_overwritten(owner, model_run):
    version = registry.register_version(owner, model_run, "model/weights", "resnet")
    log_files(owner, model_run, weights=b"retrained" * 100)
    (kept,) = version.files.all()
    assert kept.blob_id == Blob.objects.get(size=len(WEIGHTS)).pk and kept.size == len(WEIGHTS)


def test_purging_the_run_keeps_the_version_and_its_blobs(owner, model_run):
    version = registry.register_version(owner, model_run, "model/dir", "resnet", stage="production")
    run_services.delete_run(owner, model_run)
    assert cleanup.purge_run(model_run.pk)
    version.refresh_from_db()
    assert version.run is None and version.run_label == model_run.human_id and version.stage == "production"
    assert set(version.files.values_list("blob__size", flat=True)) == {len(WEIGHTS), len(CONFIG)}
    registry.delete_version(owner, version)
    assert not Blob.objects.exists()  # the last holder gone: the blobs go too


def test_only_a_file_or_file_set_of_a_live_run_can_be_registered(owner, model_run):
    with pytest.raises(ApiError) as wrong:
        registry.register_version(owner, model_run, "eval/acc", "resnet")
    assert (wrong.value.status, wrong.value.details["field"]) == (409, "path")
    with pytest.raises(ApiError) as missing:
        registry.register_version(owner, model_run, "model/nothing", "resnet")
    assert (missing.value.status, missing.value.details["field"]) == (404, "path")
    with pytest.raises(ApiError) as bad_name:
        registry.register_version(owner, model_run, "model/weights", "no/slash")
    assert (bad_name.value.status, bad_name.value.details["field"]) == (400, "name")
    with pytest.raises(ApiError) as bad_stage:
        registry.register_version(owner, model_run, "model/weights", "resnet", stage="prod")
    assert (bad_stage.value.status, bad_stage.value.details["field"]) == (400, "stage")
    run_services.delete_run(owner, model_run)
    with pytest.raises(ApiError) as trashed:
        registry.register_version(owner, model_run, "model/weights", "resnet")
    assert (trashed.value.status, trashed.value.details["field"]) == (409, "run")
    assert not RegisteredModel.objects.exists()


def test_a_model_name_is_unique_in_its_workspace_and_holds_runs_of_its_project(owner, workspace, model_run):
    registry.register_version(owner, model_run, "model/weights", "resnet")
    other_project = project_services.create_project(owner, workspace, "nlp", key="NLP")
    other_run, _ = run_services.create_run(owner, other_project)
    log_files(owner, other_run)
    with pytest.raises(ApiError) as taken:
        registry.register_version(owner, other_run, "model/weights", "resnet")
    assert (taken.value.status, taken.value.details["field"]) == (409, "name")
    with pytest.raises(ApiError) as created:
        registry.create_model(owner, other_project, "resnet")
    assert created.value.status == 409
    with pytest.raises(ApiError):
        registry.rename_model(owner, registry.create_model(owner, other_project, "bert"), "resnet")
    assert RegisteredModel.objects.get(name="bert").project == other_project


def test_writers_register_and_promote_viewers_get_403_strangers_404(owner, contributor, viewer, stranger, model_run):
    version = registry.register_version(contributor, model_run, "model/weights", "resnet")
    registry.transition_stage(contributor, version, "staging")
    with pytest.raises(PermissionDenied):
        registry.register_version(viewer, model_run, "model/weights", "resnet")
    with pytest.raises(PermissionDenied):
        registry.transition_stage(viewer, version, "production")
    with pytest.raises(Http404):
        registry.transition_stage(stranger, version, "production")
    with pytest.raises(Http404):
        registry.register_version(stranger, model_run, "model/weights", "resnet")
    version.refresh_from_db()
    assert version.stage == "staging" and ModelVersion.objects.count() == 1


def test_archive_existing_archives_the_other_versions_in_the_target_stage(owner, model_run):
    v1 = registry.register_version(owner, model_run, "model/weights", "resnet", stage="production")
    v2 = registry.register_version(owner, model_run, "model/weights", "resnet", stage="staging")
    v3 = registry.register_version(owner, model_run, "model/weights", "resnet", stage="production")
    registry.transition_stage(owner, v2, "production", archive_existing=True)
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "archived", 2: "production", 3: "archived"}
    # without archive_existing the other versions stay; "the production version" is the newest there
    registry.transition_stage(owner, v3, "production")
    registry.transition_stage(owner, v1, "none")
    assert dict(ModelVersion.objects.values_list("version", "stage")) == {1: "none", 2: "production", 3: "production"}


def test_a_stage_change_is_audited_and_delivered_to_webhooks(
    eager, receiver, owner, model_run, django_capture_on_commit_callbacks
):
    make_hook(owner, model_run.project, receiver, events=["model_version.stage_changed"])
    version = registry.register_version(owner, model_run, "model/weights", "resnet")
    with django_capture_on_commit_callbacks(execute=True):
        registry.transition_stage(owner, version, "production")
    with django_capture_on_commit_callbacks(execute=True):
        registry.transition_stage(owner, version, "production")  # no change: nothing announced
    (request,) = receiver.requests
    assert verify("s3cret", request)
    (body,) = receiver.bodies()
    assert body["event"] == "model_version.stage_changed"
    assert body["data"] == {
        "model": "resnet",
        "version": 1,
        "from_stage": "none",
        "to_stage": "production",
        "by": owner.username,
    }
    assert body["run"]["id"] == model_run.human_id
    (entry,) = AuditEvent.objects.filter(action="model_version.stage_changed")
    assert entry.actor == owner and entry.project == model_run.project
    assert entry.details == {"model": "resnet", "version": 1, "from": "none", "to": "production"}


def test_aliases_point_at_one_version_each(owner, model_run):
    v1 = registry.register_version(owner, model_run, "model/weights", "resnet")
    v2 = registry.register_version(owner, model_run, "model/weights", "resnet")
    registry.set_alias(owner, v1, "champion")
    registry.set_alias(owner, v2, "champion")
    assert list(v2.model.aliases.values_list("alias", "version__version")) == [("champion", 2)]
    with pytest.raises(ApiError) as reserved:
        registry.set_alias(owner, v1, "latest")
    assert reserved.value.details["field"] == "alias"
    assert registry.delete_alias(owner, v2.model, "champion") is True
    assert registry.delete_alias(owner, v2.model, "champion") is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_never_share_a_version_number(owner, run, local_blobs):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes one writer at a time; the race needs concurrent writers")
    log_files(owner, run)
    registry.register_version(owner, run, "model/weights", "resnet")  # the model exists: the race is on numbers
    numbers, errors = [], []
    barrier = threading.Barrier(6)

    def register():
        try:
            barrier.wait()
            numbers.append(registry.register_version(owner, run, "model/weights", "resnet").version)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(numbers) == [2, 3, 4, 5, 6, 7]


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_registrations_of_a_new_name_create_one_model(owner, run, local_blobs):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes one writer at a time; the race needs concurrent writers")
    log_files(owner, run)
    numbers, errors = [], []
    barrier = threading.Barrier(4)

    def register():
        try:
            barrier.wait()
            numbers.append(registry.register_version(owner, run, "model/dir", "fresh").version)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(numbers) == [1, 2, 3, 4] and RegisteredModel.objects.filter(name="fresh").count() == 1
