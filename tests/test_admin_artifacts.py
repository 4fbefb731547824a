"""Artifact names, versions and run links in Django admin: listed with what an operator looks for
(hash, name, kind, size, workspace), searchable and filtered, read-only (hashes and file lists are
shown, never edited), a fixed number of statements per list page, and scoped for staff who are not
superusers."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from projects import services as project_services
from runs import services as run_services
from runs.artifacts.models import Artifact, ArtifactVersion, RunArtifact

from .test_artifacts import DATA_V1, DATA_V2, listing, track

MODELS = (Artifact, ArtifactVersion, RunArtifact)


@pytest.fixture
def root_client(db):
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    return client


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.fixture
def tracked(owner, project, run):
    track(owner, run, "data/train", DATA_V1, name="tabular")
    track(owner, run, "model", {"model.pt": b"weights"}, role="output", name="resnet", seq=1)
    other, _ = run_services.create_run(owner, project, name="other")
    track(owner, other, "data/train", DATA_V2, name="tabular")
    return {"run": run, "other": other}


def test_every_artifact_list_and_change_page_opens_and_nothing_can_be_added_changed_or_deleted(root_client, tracked):
    for model in MODELS:
        assert root_client.get(changelist(model)).status_code == 200, model.__name__
        obj = model.objects.order_by("pk").first()
        page = root_client.get(change_url(obj))
        assert page.status_code == 200, model.__name__
        add = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
        assert root_client.get(add).status_code == 403, model.__name__
        delete = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_delete", args=[obj.pk])
        assert root_client.post(delete, {"post": "yes"}).status_code == 403, model.__name__
    assert ArtifactVersion.objects.count() == 3 and RunArtifact.objects.count() == 3


def test_a_versions_hash_and_file_list_are_shown_read_only_with_its_runs(root_client, tracked):
    version = ArtifactVersion.objects.get(hash=listing(DATA_V1)[0])
    page = root_client.get(change_url(version)).content.decode()
    assert version.hash in page and "a.csv" in page and "b.csv" in page
    assert 'name="hash"' not in page and 'name="files"' not in page  # no input: read-only
    assert tracked["run"].human_id in page  # the link inline names the consuming run
    before = version.hash
    root_client.post(change_url(version), {"hash": "0" * 64})
    version.refresh_from_db()
    assert version.hash == before


def test_versions_are_found_by_hash_and_name_and_filtered_by_kind(root_client, tracked):
    digest = listing(DATA_V2)[0]
    found = root_client.get(changelist(ArtifactVersion) + f"?q={digest}").context["cl"].result_list
    assert [v.hash for v in found] == [digest]
    named = root_client.get(changelist(ArtifactVersion) + "?q=tabular").context["cl"].result_list
    assert {v.hash for v in named} == {listing(DATA_V1)[0], digest}
    assert len(root_client.get(changelist(ArtifactVersion) + "?kind=uploaded").context["cl"].result_list) == 0
    links = root_client.get(changelist(RunArtifact) + "?role=output").context["cl"].result_list
    assert [link.path for link in links] == ["model"]
    names = root_client.get(changelist(Artifact) + "?q=res").context["cl"].result_list
    assert [a.name for a in names] == ["resnet"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_artifact_lists_make_the_same_number_of_queries_for_many_rows(
    root_client, owner, project, model, django_assert_max_num_queries
):
    def make(start, count):
        run, _ = run_services.create_run(owner, project, name=f"r{start}")
        for i in range(start, start + count):
            track(owner, run, f"data/d{i}", {f"{i}.csv": bytes([i % 250]) * (i + 1)}, name=f"set-{i}", seq=i)

    make(0, 2)
    with django_assert_max_num_queries(15) as few:
        assert root_client.get(changelist(model)).status_code == 200
    make(2, 30)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = root_client.get(changelist(model))
    assert len(response.context["cl"].result_list) == 32


def test_staff_who_are_not_superusers_see_only_what_runs_they_may_view_link(viewer, owner, tracked):
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(*Permission.objects.filter(content_type__app_label="artifacts"))
    elsewhere = project_services.create_project(owner, project_services.create_workspace(owner, "beta", "B"), "nlp")
    hidden, _ = run_services.create_run(owner, elsewhere, name="hidden")
    track(owner, hidden, "data", {"secret.csv": b"secret"}, name="secret-set")
    client = Client()
    client.force_login(viewer)
    versions = client.get(changelist(ArtifactVersion)).context["cl"].result_list
    assert listing({"secret.csv": b"secret"})[0] not in {v.hash for v in versions} and len(versions) == 3
    assert "secret-set" not in {a.name for a in client.get(changelist(Artifact)).context["cl"].result_list}
    assert {link.run_id for link in client.get(changelist(RunArtifact)).context["cl"].result_list} == {
        tracked["run"].pk,
        tracked["other"].pk,
    }
    secret = ArtifactVersion.objects.get(hash=listing({"secret.csv": b"secret"})[0])
    assert client.get(change_url(secret)).status_code == 302  # the admin's "does not exist"
