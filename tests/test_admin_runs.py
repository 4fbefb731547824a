"""The runs app in Django admin, as an operator uses it: every list and object page opens, the
internal tables cannot be added to, changed or deleted by hand, runs go to the trash and are
purged through the services, sizes read as sizes, and list pages stay cheap as tables grow."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.files.storage import storages
from django.test import Client
from django.urls import reverse

from projects import services as project_services
from runs import rollups
from runs import services as run_services
from runs.admin import BoundedCountPaginator
from runs.models import (
    Attribute,
    Blob,
    BlobInfo,
    BlobPreview,
    Export,
    FileEntry,
    PendingUpload,
    ProjectField,
    RollupCursor,
    Run,
    RunBatch,
    SavedView,
    Upload,
)

from .conftest import batch
from .test_files import upload

RUNS_MODELS = [model for model in admin.site._registry if model._meta.app_label == "runs"]
INTERNAL = [model for model in RUNS_MODELS if model is not Run]


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.org", "pw")


@pytest.fixture
def root_client(root):
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def filled(owner, owner_api, run, project):
    """A run with a float and a string series, an uploaded file attached to a field, a roll-up,
    processing results, a direct upload in progress, an export and a saved view: one row in
    every table the runs admin shows."""
    sha = upload(owner_api, run, "weights.bin", b"w" * 5000).json()["sha256"]
    response = batch(
        owner_api,
        run,
        [
            {"op": "append", "path": "loss", "values": [1.0, 0.5, 0.25]},
            {"op": "append", "path": "log", "kind": "string", "values": ["a", "b"]},
            {"op": "upload", "path": "model", "sha256": sha},
        ],
    )
    assert response.status_code == 200, response.content
    rollups.roll_up(Attribute.objects.get(run=run, path="loss").pk)
    blob = Blob.objects.get(pk=sha)
    BlobInfo.objects.get_or_create(blob=blob, defaults={"state": "ready", "detected_mime_type": "text/plain"})
    BlobPreview.objects.get_or_create(
        blob=blob, kind="thumbnail", defaults={"storage_key": f"previews/{sha}", "mime_type": "image/png", "size": 7000}
    )
    PendingUpload.objects.create(run=run, staging_key="staging/x", sha256="0" * 64, size=3_000_000, name="big.bin")
    Export.objects.create(project=project, run=run, requested_by=owner, size=12_345_678)
    run_services.save_view(owner, project, name="mine", shared=True, columns=[], query="", sort="", group_by="")
    gone, _ = run_services.create_run(owner, project, name="gone")
    run_services.erase_runs(owner, [gone], reason="a request to be forgotten", subject=f"run {gone.human_id}")
    return {"run": run, "sha": sha}


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_every_runs_changelist_and_a_change_page_of_each_open_for_a_superuser(root_client, filled):
    assert {m.__name__ for m in RUNS_MODELS} >= {
        "Run",
        "Attribute",
        "ProjectField",
        "Blob",
        "Upload",
        "FileEntry",
        "RunBatch",
        "SavedView",
        "RollupCursor",
        "BlobInfo",
        "BlobPreview",
        "PendingUpload",
        "Export",
    }
    for model in RUNS_MODELS:
        assert root_client.get(changelist(model)).status_code == 200, model.__name__
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"no {model.__name__} to open"
        response = root_client.get(change_url(obj))
        assert response.status_code == 200, (model.__name__, response.status_code)


def test_no_table_of_the_runs_app_can_be_added_to_from_admin(root_client, filled):
    for model in RUNS_MODELS:
        add = reverse(f"admin:runs_{model._meta.model_name}_add")
        assert root_client.get(add).status_code == 403, model.__name__
        assert root_client.post(add, {}).status_code == 403, model.__name__
        assert add not in root_client.get(changelist(model)).content.decode(), model.__name__


def test_a_change_post_on_an_internal_table_alters_nothing(root_client, filled):
    attribute = Attribute.objects.get(run=filled["run"], path="loss")
    blob = Blob.objects.get(pk=filled["sha"])
    entry = FileEntry.objects.get(blob=blob)
    posts = [
        (attribute, {"path": "hacked", "type": "int", "count": "0", "run": filled["run"].pk}),
        (blob, {"sha256": blob.sha256, "size": "1", "mime_type": "text/html"}),
        (entry, {"relpath": "../../etc", "size": "1", "name": "x"}),
        (RunBatch.objects.first(), {"seq": "999", "op_count": "0"}),
        (RollupCursor.objects.first(), {"rolled_until": "0", "queued": "on"}),
        (Export.objects.first(), {"state": "done", "storage_key": "elsewhere"}),
        (SavedView.objects.first(), {"name": "renamed", "shared": ""}),
    ]
    for obj, data in posts:
        before = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
        response = root_client.post(change_url(obj), data)
        assert response.status_code == 403, type(obj).__name__
        obj.refresh_from_db()
        assert {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields} == before
        page = root_client.get(change_url(obj)).content.decode()
        assert 'type="submit"' not in page or 'name="_save"' not in page, type(obj).__name__


def test_internal_tables_offer_no_delete_and_a_delete_post_removes_nothing(root_client, filled):
    for model in INTERNAL:
        if model is SavedView:  # an owner's view, nothing depends on it
            continue
        obj = model.objects.order_by("pk").first()
        delete = reverse(f"admin:runs_{model._meta.model_name}_delete", args=[obj.pk])
        assert root_client.post(delete, {"post": "yes"}).status_code == 403, model.__name__
        assert model.objects.filter(pk=obj.pk).exists(), model.__name__
        actions = root_client.get(changelist(model)).content.decode()
        assert "delete_selected" not in actions, model.__name__


def test_move_to_trash_and_restore_actions_go_through_the_services(root_client, filled, owner, project):
    run = filled["run"]
    other, _ = run_services.create_run(owner, project, name="other")
    response = root_client.post(changelist(Run), {"action": "move_to_trash", "_selected_action": [run.pk]})
    assert response.status_code == 302
    run.refresh_from_db()
    other.refresh_from_db()
    assert run.deleted_at is not None and other.deleted_at is None
    assert Attribute.objects.filter(run=run).exists()  # in the trash, not deleted

    trashed = root_client.get(changelist(Run), {"trash": "trashed"}).context["cl"].result_list
    assert [r.pk for r in trashed] == [run.pk]

    response = root_client.post(changelist(Run), {"action": "restore_from_trash", "_selected_action": [run.pk]})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.deleted_at is None


def test_purge_action_leaves_live_runs_and_purges_trashed_ones_with_their_blobs(root_client, filled, owner, project):
    run = filled["run"]
    key = Blob.objects.get(pk=filled["sha"]).storage_key
    assert storages["blobs"].exists(key)

    response = root_client.post(changelist(Run), {"action": "purge_now", "_selected_action": [run.pk]}, follow=True)
    assert "not in the trash" in response.content.decode()
    assert Run.objects.filter(pk=run.pk, deleted_at__isnull=True).exists()
    assert storages["blobs"].exists(key)

    root_client.post(changelist(Run), {"action": "move_to_trash", "_selected_action": [run.pk]})
    response = root_client.post(changelist(Run), {"action": "purge_now", "_selected_action": [run.pk]}, follow=True)
    assert "Purged 1 run(s)." in response.content.decode()
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Attribute.objects.filter(run_id=run.pk).exists() and not Upload.objects.filter(run_id=run.pk).exists()
    assert not Blob.objects.filter(pk=filled["sha"]).exists() and not storages["blobs"].exists(key)


def test_admin_delete_of_a_run_moves_it_to_the_trash_without_listing_its_rows(root_client, filled):
    run = filled["run"]
    delete = reverse("admin:runs_run_delete", args=[run.pk])
    page = root_client.get(delete)
    assert page.status_code == 200
    assert "moves to the trash" in page.content.decode() and "loss" not in page.content.decode()
    assert root_client.post(delete, {"post": "yes"}).status_code == 302
    assert Run.objects.get(pk=run.pk).deleted_at is not None
    assert {a.path for a in Attribute.objects.filter(run=run)} == {"sys/tags", "loss", "log", "model"}


def test_run_list_shows_human_id_and_is_searchable_by_id_name_owner_and_project(root_client, run, owner, project):
    other_ws = project_services.create_workspace(owner, "beta", "Beta")
    other_project = project_services.create_project(owner, other_ws, "nlp", key="NLP")
    stranger_run, _ = run_services.create_run(owner, other_project, name="translation")

    page = root_client.get(changelist(Run)).content.decode()
    assert run.human_id in page and stranger_run.human_id in page

    def found(term):
        return {r.pk for r in root_client.get(changelist(Run), {"q": term}).context["cl"].result_list}

    assert found(run.human_id) == {run.pk}
    assert found(run.human_id.lower()) == {run.pk}
    assert found("translation") == {stranger_run.pk}
    assert found("nlp") == {stranger_run.pk}
    assert found("owner") == {run.pk, stranger_run.pk}
    assert found("NLP-999") == set()

    by_workspace = root_client.get(changelist(Run), {"project__workspace__id__exact": other_ws.pk})
    assert {r.pk for r in by_workspace.context["cl"].result_list} == {stranger_run.pk}
    by_state = root_client.get(changelist(Run), {"state": "finished"})
    assert list(by_state.context["cl"].result_list) == []
    # a human id searched among the trashed runs only finds a trashed one
    trashed = root_client.get(changelist(Run), {"q": run.human_id, "trash": "trashed"})
    assert list(trashed.context["cl"].result_list) == []


def test_sizes_are_shown_human_readable_never_as_raw_bytes(root_client, filled):
    blob = Blob.objects.get(pk=filled["sha"])
    pages = {
        changelist(Blob): "4.9\xa0KB",
        change_url(blob): "4.9\xa0KB",
        changelist(FileEntry): "4.9\xa0KB",
        changelist(BlobPreview): "6.8\xa0KB",
        changelist(PendingUpload): "2.9\xa0MB",
        changelist(Export): "11.8\xa0MB",
        change_url(Export.objects.get()): "11.8\xa0MB",
        change_url(filled["run"]): "4.9\xa0KB of files",
    }
    for url, size in pages.items():
        html = root_client.get(url).content.decode()
        assert size in html, url
        for raw in ("5000", "7000", "3000000", "12345678"):
            assert f">{raw}<" not in html and f"{raw} bytes" not in html, (url, raw)


def test_run_page_links_to_its_fields(root_client, filled):
    run = filled["run"]
    page = root_client.get(change_url(run)).content.decode()
    link = changelist(Attribute) + f"?run__id__exact={run.pk}"
    assert link in page and "4 fields" in page
    listed = root_client.get(link).context["cl"].result_list
    assert {a.path for a in listed} == {"sys/tags", "loss", "log", "model"}


@pytest.mark.parametrize("model", [Attribute, FileEntry, RunBatch, RollupCursor, Upload, Blob, ProjectField])
def test_growing_tables_count_a_bounded_number_of_rows_and_sort_only_by_key(root_client, filled, model, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "CAP", 1)
    response = root_client.get(changelist(model))
    cl = response.context["cl"]
    assert cl.result_count == 1 and cl.full_result_count is None  # no count of the whole table
    assert set(cl.queryset.query.order_by) == {"-pk"}
    assert 'class="sortable' not in response.content.decode()
    sorted_by_column = root_client.get(changelist(model), {"o": "1"}).context["cl"]
    assert set(sorted_by_column.queryset.query.order_by) == {"-pk"}


def test_runs_changelist_makes_the_same_number_of_queries_for_many_runs(
    root_client, owner, project, django_assert_max_num_queries
):
    def make(count):
        for index in range(count):
            run_services.create_run(owner, project, name=f"r{index}")

    make(2)
    with django_assert_max_num_queries(12) as few:
        assert root_client.get(changelist(Run)).status_code == 200
    make(40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = root_client.get(changelist(Run))
    assert len(response.context["cl"].result_list) == 42


def test_staff_who_are_not_superusers_see_only_runs_of_projects_they_may_view(viewer, run, owner):
    from django.contrib.auth.models import Permission

    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="runs", codename__startswith="view_")
    )
    elsewhere = project_services.create_project(owner, project_services.create_workspace(owner, "beta", "B"), "nlp")
    hidden, _ = run_services.create_run(owner, elsewhere, name="hidden")
    client = Client()
    client.force_login(viewer)

    listed = client.get(changelist(Run)).context["cl"].result_list
    assert [r.pk for r in listed] == [run.pk]
    fields = client.get(changelist(Attribute)).context["cl"].result_list
    assert {a.run_id for a in fields} == {run.pk}
    assert client.get(change_url(hidden)).status_code == 302  # the admin's "does not exist"
