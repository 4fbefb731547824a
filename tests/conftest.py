"""A permission world: owner, contributor, viewer, stranger, anonymous.

``acme`` is a workspace owned by ``owner`` with ``contributor`` as a member;
its private project ``acme/vision`` (key VIS) has ``contributor`` and
``viewer`` as project members with those roles (``viewer`` is in no other
way a member of ``acme``) and holds one run, ``run``, owned by ``owner``;
``stranger`` has an account but no membership.
"""

import os
import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import ProjectRole, WorkspaceRole
from runs import services as run_services

pytest.register_assert_rewrite("tests.roles")  # the role matrix's failures show the statuses by role


def make_user(username):
    return User.objects.create_user(username=username, password="pw-" + username)


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def contributor(db):
    return make_user("contributor")


@pytest.fixture
def viewer(db):
    return make_user("viewer")


@pytest.fixture
def stranger(db):
    return make_user("stranger")


@pytest.fixture
def workspace(owner, contributor):
    ws = project_services.create_workspace(owner, "acme", "Acme")
    project_services.set_membership(ws, contributor, WorkspaceRole.MEMBER, by=owner)
    return ws


@pytest.fixture
def project(workspace, owner, contributor, viewer):
    created = project_services.create_project(owner, workspace, "vision", key="VIS")
    project_services.set_project_role(created, contributor, ProjectRole.CONTRIBUTOR, by=owner)
    project_services.set_project_role(created, viewer, ProjectRole.VIEWER, by=owner)
    return created


@pytest.fixture
def run(project, owner):
    created, _ = run_services.create_run(owner, project, name="baseline", tags=["base"])
    return created


@pytest.fixture
def world(owner, contributor, viewer, stranger, run):
    """Each role's user by name (``anonymous``: None) and the ``run`` they are checked against."""
    return {
        "owner": owner,
        "contributor": contributor,
        "viewer": viewer,
        "stranger": stranger,
        "anonymous": None,
        "run": run,
    }


def client_for(user):
    client = APIClient()
    if user is not None:
        _, raw = ApiToken.issue(user, name="test")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api():
    """``api(user)`` → an APIClient authenticated with a fresh bearer token (``None``: anonymous)."""
    return client_for


@pytest.fixture
def owner_api(owner):
    return client_for(owner)


def run_url(run, suffix=""):
    return f"/api/v1/runs/{run.project.workspace.slug}/{run.project.slug}/{run.human_id}/{suffix}"


def batch(client, run, ops, seq=1, stream="s1", fmt="json"):
    return client.post(run_url(run, "batch"), {"stream": stream, "seq": seq, "ops": ops}, format=fmt)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def s3_blob_storage(settings, **options):
    """Point the ``blobs`` storage at the test S3 store (SeaweedFS), under a fresh prefix; skip without it."""
    endpoint = os.environ.get("RUNSTORE_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.skip("RUNSTORE_TEST_S3_ENDPOINT not set (make test starts SeaweedFS)")
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ["RUNSTORE_TEST_S3_BUCKET"],
                "endpoint_url": endpoint,
                "access_key": os.environ["RUNSTORE_TEST_S3_ACCESS_KEY"],
                "secret_key": os.environ["RUNSTORE_TEST_S3_SECRET_KEY"],
                "region_name": "us-east-1",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "location": f"test-{uuid.uuid4().hex}",
                **options,
            },
        },
    }


@pytest.fixture(params=["local", "s3"])
def blob_store(request, settings, tmp_path):
    """Every file test runs on the local folder and on the S3 store (SeaweedFS) when it is up."""
    if request.param == "local":
        settings.STORAGES = {
            **settings.STORAGES,
            "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
        }
        return "local"
    s3_blob_storage(settings)
    return "s3"
