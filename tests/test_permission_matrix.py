"""The permission matrix: every route of the URLconf × every kind of principal × every method it answers.

Routes are found by walking the URLconf, so a new route without a rule in tests/matrix_rules.py
fails here. The world (acme, acme/vision, the run VIS-1 with series, files, an export, a saved
view, a pending upload; the principals and their tokens) is built once for the module inside a
transaction that is rolled back at its end, and every request runs in a savepoint rolled back
after it, so a delete or a rename never changes what the next principal meets.
"""

import hashlib
import io
import re
import tempfile

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.views.generic.edit import ProcessFormView
from rest_framework.test import APIClient

from accounts.models import ApiToken
from projects import services as project_services
from projects.models import Membership, ProjectGrant, ProjectRole, WorkspaceRole
from runs import exports, processing
from runs import services as run_services
from runs.mlflow.tracking import ARTIFACTS_PATH
from runs.models import PendingUpload
from runs.registry import services as registry_services
from runs.webhooks import services as webhook_services

from .matrix_rules import EXCLUDED_PREFIXES, PRINCIPALS, PUBLIC, RULES, RUN_LAST, TOKEN_ONLY, expected_status

# The world is built once for the module (see ``matrix``); each test also runs in its own savepoint.
pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


# --- the URLconf ---


def walk(patterns=None, prefix="", namespace=""):
    """Every URL pattern: (name, route, callback), admin and other excluded prefixes left out."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if any(route.startswith(excluded) for excluded in EXCLUDED_PREFIXES):
            continue
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from walk(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}{pattern.name}" if pattern.name else route
            yield name, route, pattern.callback


def allowed_methods(callback) -> list[str]:
    """The HTTP methods a view answers, read from its class (DRF viewsets: their action map)."""
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(m.upper() for m in actions)
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return ["GET"]  # a function view
    # Django's form views answer PUT with their POST handler: the POST rule covers it.
    return [
        m.upper()
        for m in METHODS
        if m in view_class.http_method_names
        and hasattr(view_class, m)
        and getattr(view_class, m) is not ProcessFormView.put
    ]


ROUTES = {name: (route, allowed_methods(callback)) for name, route, callback in walk()}
ROUTE_VIEWS = {name: callback for name, _, callback in walk()}


def test_every_route_has_a_rule():
    """A route (or a method of one) without a rule fails, and so does a rule left for a route that is gone."""
    problems = []
    for name, (route, methods) in ROUTES.items():
        if name in PUBLIC:
            continue
        if name not in RULES:
            problems.append(f"route {name!r} ({route}) needs a rule in tests/matrix_rules.py (or a PUBLIC reason)")
            continue
        missing = [m for m in methods if m not in RULES[name]]
        if missing:
            problems.append(f"route {name!r} ({route}) answers {missing} with no rule in tests/matrix_rules.py")
        extra = [m for m in RULES[name] if m not in methods]
        if extra:
            problems.append(f"route {name!r} ({route}) has rules for {extra}, which it does not answer")
    gone = sorted((set(RULES) | set(PUBLIC)) - set(ROUTES))
    if gone:
        problems.append(f"rules for routes no longer in the URLconf: {gone}")
    assert not problems, "\n".join(problems)


# --- the world ---


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _store(user, run, name, content):
    uploaded = SimpleUploadedFile(name, content)
    uploaded.sha256 = hashlib.sha256(content).hexdigest()
    return run_services.store_upload(user, run, uploaded)


def build_world() -> dict:
    def user(name):
        return User.objects.create_user(username=name, password="pw-" + name)

    founder = user("founder")
    people = {name: user(name) for name in ("stranger", "viewer", "contributor", "custom", "teammate")}
    people |= {"project_owner": user("project_owner"), "ws_admin": user("ws_admin"), "denied": user("denied")}
    acme = project_services.create_workspace(founder, "acme", "Acme")
    vision = project_services.create_project(founder, acme, "vision", key="VIS")
    project_services.set_membership(acme, people["contributor"], WorkspaceRole.MEMBER, by=founder)
    project_services.set_membership(acme, people["ws_admin"], WorkspaceRole.ADMIN, by=founder)
    project_services.set_membership(acme, people["denied"], WorkspaceRole.ADMIN, by=founder)
    project_services.set_project_role(vision, people["viewer"], ProjectRole.VIEWER, by=founder)
    project_services.set_project_role(vision, people["contributor"], ProjectRole.CONTRIBUTOR, by=founder)
    project_services.set_project_role(vision, people["project_owner"], ProjectRole.OWNER, by=founder)
    log_runs = project_services.save_custom_role(acme, "log runs", ["view", "write"], by=founder)
    project_services.grant_custom_role(vision, people["custom"], log_runs, by=founder)
    no_delete = project_services.save_custom_role(acme, "no delete", ["delete"], by=founder)
    project_services.grant_custom_role(vision, people["denied"], no_delete, deny=True, by=founder)
    team = project_services.create_team(acme, "ml", by=founder, members=[people["teammate"]])
    project_services.set_project_role(vision, team, ProjectRole.CONTRIBUTOR, by=founder)
    bot = project_services.create_service_account(acme, "ci-bot", by=founder).user
    project_services.set_project_role(vision, bot, ProjectRole.CONTRIBUTOR, by=founder)

    tokens = {}
    for name, person in people.items():
        tokens[name] = project_services.issue_token(person, name="matrix", scope="admin")[1]
    service_token, tokens["service_token"] = project_services.issue_token(bot, name="ci", scope="write", by=founder)
    owner = people["project_owner"]
    tokens["read_token"] = project_services.issue_token(owner, name="read", scope="read")[1]
    personal = project_services.ensure_personal_workspace(owner)
    tokens["other_ws_token"] = project_services.issue_token(owner, name="bound", scope="admin", workspace=personal)[1]

    run, _ = run_services.create_run(founder, vision, name="baseline")
    weights = _store(founder, run, "weights.bin", b"weights")
    image = _store(founder, run, "sample.png", _png())
    ops = [
        {"op": "append", "path": "train/loss", "values": [0.5, 0.25, 0.125]},
        {"op": "append", "path": "stdout", "kind": "string", "values": ["epoch 1 done"]},
        {"op": "upload", "path": "model/weights", "sha256": weights.sha256, "name": "weights.bin"},
        {"op": "upload", "path": "images/sample", "sha256": image.sha256, "name": "sample.png"},
        {"op": "upload_set", "path": ARTIFACTS_PATH, "files": [{"relpath": "model.bin", "sha256": weights.sha256}]},
        {"op": "track", "path": "data/train", "hash": SHA_OF_NOTHING, "files": [], "name": "matrix-data"},
        {
            "op": "append",
            "path": "images/samples",
            "kind": "file",
            "values": [{"sha256": image.sha256, "name": "s.png", "mime_type": "image/png"}],
        },
    ]
    run_services.apply_batch(founder, run, stream="world", seq=0, raw_ops=ops)
    processing.process_blob(image.sha256)  # what the media worker does: the thumbnail preview
    model_version = registry_services.register_version(
        founder, run, "model/weights", "matrix-model", stage="production"
    )
    registry_services.set_alias(founder, model_version, "champion")
    export = run_services.request_export(founder, vision)
    assert exports.build(export.pk) == "done"
    saved = run_services.save_view(
        owner, vision, name="owners", shared=True, columns=[], query="", sort="", group_by=""
    )
    pending = PendingUpload.objects.create(run=run, staging_key="staging/matrix", sha256=SHA_OF_NOTHING, size=3)
    hook = webhook_services.create_webhook(founder, vision, url=PUBLIC_HOOK_URL, events=["run.created"])
    delivery = webhook_services.enqueue_delivery(hook, "ping", run=None, data={})  # queued after a commit: never
    erased, _ = run_services.create_run(founder, vision, name="erased")
    erasure = run_services.erase_runs(founder, [erased], reason="matrix", subject=f"run {erased.human_id}")
    return {
        "people": people,
        "tokens": tokens,
        "kwargs": {
            "workspace": "acme",
            "workspace_slug": "acme",
            "project": "vision",
            "run_id": "VIS-1",
            "run_ref": "acme/vision/VIS-1",
            "export_id": export.pk,
            "upload_id": pending.pk,
            "membership_id": Membership.objects.get(workspace=acme, user=people["contributor"]).pk,
            "team": "ml",
            "role_id": log_runs.pk,
            "username": "ci-bot",
            "grant_id": ProjectGrant.objects.get(project=vision, user=people["viewer"]).pk,
            "token_id": ApiToken.objects.get(user=owner, scope="read").pk,
            "webhook_id": hook.pk,
            "delivery_id": delivery.pk,
            "model_name": "matrix-model",
            "version": 1,
            "stage": "production",
            "alias": "champion",
        },
        "values": {
            "saved_view": str(saved.pk),
            "service_token": str(service_token.pk),
            "run_uuid": run.uuid.hex,
            "erasure_id": str(erasure.pk),
            "experiment_id": str(vision.pk),
        },
    }


SHA_OF_NOTHING = "1" * 64
PUBLIC_HOOK_URL = "https://93.184.216.34/hook"  # a public address literal: saved without a DNS look-up


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker):
    from django.conf import settings

    # A folder of our own, not under pytest's base temp: other pytest sessions on the machine prune those.
    with tempfile.TemporaryDirectory(prefix="runstore-matrix-") as folder:
        blobs = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": folder}}
        storages = {**settings.STORAGES, "blobs": blobs}
        hashers = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        with django_db_blocker.unblock(), override_settings(STORAGES=storages, PASSWORD_HASHERS=hashers):
            with transaction.atomic():
                yield build_world()
                transaction.set_rollback(True)


# --- sending ---


def clients(world, ui: bool) -> dict:
    """One client per principal: a session for people in the UI, a bearer token on the API (and on
    the UI for token-only principals, where it must not sign anyone in)."""
    out = {}
    for principal in PRINCIPALS:
        client = Client() if ui else APIClient()
        if principal == "anonymous":
            pass
        elif ui and principal not in TOKEN_ONLY:
            client.force_login(world["people"][principal])
        else:
            token = world["tokens"][principal]
            if ui:
                client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            else:
                client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        out[principal] = client
    return out


def send(client, method: str, url: str, req, values: dict):
    data = req.data() if callable(req.data) else req.data
    if isinstance(data, dict):
        data = {k: v.format(**values) if isinstance(v, str) else v for k, v in data.items()}
    if req.query:
        query = "&".join(f"{k}={str(v).format(**values)}" for k, v in req.query.items())
        url += ("&" if "?" in url else "?") + query
    options = {}
    if data is not None:
        options["data"] = data
    if req.format == "octet":
        options["content_type"] = "application/octet-stream"
    elif req.format and isinstance(client, APIClient):
        options["format"] = req.format
    with transaction.atomic():
        response = getattr(client, method.lower())(url, **options)
        if response.streaming:
            # read to the end: the test client then closes the file behind it (calling close() here
            # would send request_finished, which closes the database connection inside the transaction)
            b"".join(response.streaming_content)
        transaction.set_rollback(True)
    return response


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and reverse("accounts:login") in response["Location"]


@pytest.mark.parametrize("name", sorted((n for n in ROUTES if n not in PUBLIC), key=lambda n: (n in RUN_LAST, n)))
def test_route_answers_each_principal_exactly(matrix, name):
    world = matrix
    route, methods = ROUTES[name]
    rules = RULES.get(name)
    assert rules is not None, f"route {name!r} ({route}) needs a rule in tests/matrix_rules.py"
    ui = not hasattr(ROUTE_VIEWS[name], "cls")  # DRF views (the API) carry their class as ``cls``
    by_principal = clients(world, ui)
    wrong = []
    for method in methods:
        for req in rules.get(method, []):
            given = {k: str(v).format(**world["values"]) for k, v in req.kwargs.items()}
            kwargs = {k: given[k] if k in given else world["kwargs"][k] for k in _kwarg_names(name)}
            url = reverse(name, kwargs=kwargs)
            for principal in PRINCIPALS:
                want = expected_status(principal, req, ui=ui)
                response = send(by_principal[principal], method, url, req, world["values"])
                got = response.status_code
                problem = None
                if got != want:
                    problem = f"got {got}, want {want}: {_body(response)}"
                elif ui and (principal == "anonymous" or principal in TOKEN_ONLY) and not is_login_redirect(response):
                    problem = f"302 to {response['Location']}, not to the login page"
                elif not ui and got in (401, 403, 404) and not {"error", "error_code"} & set(_json(response)):
                    problem = f"{got} without a JSON error: {_body(response)}"
                if problem:
                    wrong.append(f"{method} {req.label or ''} {url} as {principal}: {problem}")
    assert not wrong, f"{len(wrong)} wrong answer(s):\n" + "\n".join(wrong)


def _kwarg_names(name):
    route, _ = ROUTES[name]
    return re.findall(r"<(?:\w+:)?(\w+)>", route)


def _json(response):
    try:
        return response.json()
    except Exception:  # not JSON: the caller reports it
        return {}


def _body(response) -> str:
    if response.streaming:
        return "(streamed)"
    return response.content[:200].decode(errors="replace")


def test_admin_sends_everyone_but_staff_to_its_login(matrix):
    for principal, client in clients(matrix, ui=True).items():
        for url in ("/admin/", "/admin/accounts/apitoken/", "/admin/projects/workspace/"):
            response = client.get(url)
            assert response.status_code == 302, (principal, url, response.status_code)
            assert response["Location"].startswith("/admin/login/"), (principal, url, response["Location"])


def test_public_routes_never_ask_anyone_to_sign_in(matrix):
    anonymous = Client()
    for name in PUBLIC:
        route, methods = ROUTES[name]
        kwargs = {"uidb64": "MQ", "token": "set-password"} if "uidb64" in route else {}
        send_ = anonymous.get if "GET" in methods else anonymous.post
        response = send_(reverse(name, kwargs=kwargs))
        # readyz may answer 503 (no worker in tests): not ready, but never "sign in first"
        assert response.status_code in (200, 302, 503), (name, response.status_code)
        if name != "accounts:logout":  # signing out ends on the login page: not a refusal
            assert not is_login_redirect(response), name
