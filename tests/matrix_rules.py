"""The rules of the permission matrix (tests/test_permission_matrix.py): who gets what from every route.

What each principal holds is written down here from the design (issue 12's roles), not read from
``projects.permissions``, so the matrix checks the policy instead of repeating it. A route's rule
names, per HTTP method, the request(s) to send and the right it needs:

* ``project:<action>``   an action on ``acme/vision`` (view, export, write, delete, manage)
* ``workspace:<action>`` an action on the workspace ``acme`` (view, write, manage)
* ``signed_in``          anyone signed in (their own pages, lists scoped to what they see)

and the status a principal holding that right gets. Everyone else gets 404 when they cannot see
the object and 403 when they see it but may not act; anonymous callers get 401 from the API and a
redirect to the login page from the UI, and so do API tokens on UI pages (a bearer header never
signs anyone into the UI). ``expect`` states the exceptions per principal, each with its reason.

A route in the URLconf with no rule here fails the matrix: add its rule (or list it in ``PUBLIC``
with the reason it is public).
"""

from dataclasses import dataclass, field

PROJECT_ALL = frozenset({"view", "export", "write", "delete", "manage"})
CONTRIBUTOR = frozenset({"view", "export", "write", "delete"})
VIEWER = frozenset({"view", "export"})

# The principals, least privileged first. The last three are API tokens with no session: in the UI
# they are anonymous.
PRINCIPALS = (
    "anonymous",
    "stranger",  # an account, no membership
    "viewer",  # project viewer on acme/vision only
    "contributor",  # workspace member of acme + project contributor on acme/vision
    "custom",  # custom role "log runs" (view + write) granted on acme/vision
    "teammate",  # in team "ml", which holds the contributor role on acme/vision
    "project_owner",  # project owner of acme/vision, nothing on acme itself
    "ws_admin",  # workspace admin of acme
    "denied",  # workspace admin of acme with a denial of the custom role "no delete" on acme/vision
    "service_token",  # write-scoped token of acme's service account "ci-bot" (member + contributor on vision)
    "read_token",  # project_owner's token scoped read
    "other_ws_token",  # project_owner's admin token bound to their personal workspace
)
TOKEN_ONLY = frozenset({"service_token", "read_token", "other_ws_token"})

# The project actions each principal holds on acme/vision.
ON_PROJECT = {
    "anonymous": frozenset(),
    "stranger": frozenset(),
    "viewer": VIEWER,
    "contributor": CONTRIBUTOR,
    "custom": frozenset({"view", "write"}),
    "teammate": CONTRIBUTOR,
    "project_owner": PROJECT_ALL,
    "ws_admin": PROJECT_ALL,  # workspace admins hold every action on every project of the workspace
    "denied": PROJECT_ALL - {"delete"},  # an explicit deny wins over the workspace role
    "service_token": CONTRIBUTOR,  # its contributor grant; the token's write scope allows all of it
    "read_token": VIEWER,  # the owner's rights capped by the read scope
    "other_ws_token": frozenset(),  # bound to another workspace: acme does not exist for it
}

# The workspace actions each principal holds on acme: ``view`` also comes with seeing one of its
# projects; ``member`` (its members, teams, roles and service accounts) only with a membership.
ON_WORKSPACE = {
    "anonymous": frozenset(),
    "stranger": frozenset(),
    "viewer": frozenset({"view"}),
    "contributor": frozenset({"view", "member", "write"}),
    "custom": frozenset({"view"}),
    "teammate": frozenset({"view"}),
    "project_owner": frozenset({"view"}),
    "ws_admin": frozenset({"view", "member", "write", "manage"}),
    "denied": frozenset({"view", "member", "write", "manage"}),
    "service_token": frozenset({"view", "member", "write"}),  # a member; manage is beyond the write scope anyway
    "read_token": frozenset({"view"}),
    "other_ws_token": frozenset(),
}

# Routes anyone may reach, and why; the matrix checks only that they never ask anonymous to sign in.
PUBLIC = {
    "healthz": "liveness probe for load balancers, says nothing about data",
    "readyz": "readiness probe for load balancers, says nothing about data",
    "schema": "the OpenAPI description of the API; holds no data",
    "api-docs": "Swagger UI over the schema; holds no data",
    "accounts:login": "the sign-in form",
    "accounts:logout": "signing out needs no rights",
    "accounts:password_reset": "asking for a reset mail must work signed out",
    "accounts:password_reset_done": "the 'mail sent' page",
    "accounts:password_reset_confirm": "the reset link from the mail; its signed token is the credential",
    "accounts:password_reset_complete": "the 'password set' page",
}

# Route prefixes outside the matrix, with the reason (and the test that covers them).
EXCLUDED_PREFIXES = {
    "metrics": "no user rights: a bearer token (RUNSTORE_METRICS_TOKEN) or an address allow-list "
    "(RUNSTORE_METRICS_ALLOW), else 404/403; tests/test_observability.py",
    "admin/": "staff only; tests/test_permission_matrix.py::test_admin_sends_everyone_but_staff_to_its_login "
    "and tests/test_admin*.py",
}


# Routes whose allowed requests change something no rollback restores; their tests run last.
RUN_LAST = {
    "projects:project_delete": "deleting a project removes its stored files (blobs, previews) at once",
}


@dataclass(frozen=True)
class Req:
    """One request of a route's rule.

    ``needs``: the right it takes (see the module's docstring); ``ok``: the status of those who hold
    it; ``query``/``data``: URL parameters and body (a callable makes a fresh body per request, for
    files); ``expect``: principal → status where the general rule does not apply, each explained at
    the rule; ``label``: tells two requests of one method apart in a failure.
    """

    needs: str
    ok: int
    query: dict = field(default_factory=dict)
    data: object = None
    format: str | None = None
    expect: dict = field(default_factory=dict)
    label: str = ""
    kwargs: dict = field(default_factory=dict)


def _file():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {"file": SimpleUploadedFile("notes.txt", b"a few bytes")}


ACME_VISION = {"project": "acme/vision"}
BATCH = {"stream": "matrix", "seq": 1, "ops": [{"op": "assign", "path": "parameters/matrix", "value": 1}]}
SHA = "0" * 64
TRACKED_SHA = "1" * 64  # the world's tracked data/train ("matrix-data"; SHA_OF_NOTHING there)
WEIGHTS_SHA = "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c"  # sha256(b"weights"), the world's uploaded model/weights
# A saved view of project_owner, shared with acme/vision: everyone who sees the project sees it,
# only its owner may delete it.
NOT_THE_VIEWS_OWNER = {p: 403 for p in ("viewer", "contributor", "custom", "teammate", "ws_admin", "denied")}
# An export is visible only to those who may export from its project: the custom role (view and
# write, no export) does not see it at all.
EXPORT_INVISIBLE_WITHOUT_EXPORT = {"custom": 404}

RUN_GET = {"endpoint": "runs/get"}
MLFLOW = {
    "GET": [Req("project:view", 200, query={"run_id": "{run_uuid}"}, kwargs=RUN_GET)],
    "POST": [
        Req(
            "project:write",
            200,
            data={"run_id": "{run_uuid}", "key": "matrix", "value": "1"},
            kwargs={"endpoint": "runs/set-tag"},
        )
    ],
    # runs/get answers GET only: any other method is refused once signed in
    "PATCH": [Req("signed_in", 405, kwargs=RUN_GET)],
    "DELETE": [Req("signed_in", 405, kwargs=RUN_GET)],
}

NO_NEW_WORKSPACE = {"service_token": 403, "read_token": 403, "other_ws_token": 403}

RULES: dict[str, dict[str, list[Req]]] = {
    # --- projects API ---
    "workspace-list": {
        "GET": [Req("signed_in", 200)],
        # anyone signed in may start a workspace, but not with a read token or one bound to a workspace
        "POST": [Req("signed_in", 201, data={"slug": "matrix-new", "name": "New"}, expect=NO_NEW_WORKSPACE)],
    },
    "workspace-detail": {"GET": [Req("workspace:view", 200, kwargs={"slug": "acme"})]},
    "project-list": {
        "GET": [Req("workspace:view", 200)],
        "POST": [Req("workspace:write", 201, data={"slug": "matrix-new"})],
    },
    "project-detail": {"GET": [Req("project:view", 200, kwargs={"workspace_slug": "acme", "slug": "vision"})]},
    # --- runs API ---
    "run-list": {
        "GET": [Req("project:view", 200, query=ACME_VISION)],
        "POST": [Req("project:write", 201, data={**ACME_VISION, "name": "matrix"})],
    },
    "run-query": {"POST": [Req("project:view", 200, data=ACME_VISION)]},
    "run-groups": {
        "GET": [Req("project:view", 200, query={**ACME_VISION, "group_by": "sys/state"})],
        "POST": [Req("project:view", 200, data={**ACME_VISION, "group_by": ["sys/state"]})],
    },
    "run-suggest": {
        "GET": [Req("project:view", 200, query={**ACME_VISION, "text": "sys/"})],
        "POST": [Req("project:view", 200, data={**ACME_VISION, "text": "sys/"})],
    },
    "run-fields": {
        "GET": [Req("project:view", 200, query=ACME_VISION)],
        "POST": [Req("project:view", 200, data=ACME_VISION)],
    },
    "run-detail": {
        "GET": [Req("project:view", 200)],
        "PATCH": [Req("project:write", 200, data={"name": "renamed"})],
        "DELETE": [Req("project:delete", 204)],
    },
    "run-ping": {"POST": [Req("project:write", 204)]},
    "run-batch": {"POST": [Req("project:write", 200, data=BATCH)]},
    "run-attributes": {"GET": [Req("project:view", 200)]},
    # artifact versions and lineage: a version or name is known only through runs the caller may view
    "run-artifacts": {"GET": [Req("project:view", 200)]},
    "run-lineage": {"GET": [Req("project:view", 200, query={"depth": "3"})]},
    "artifact-version": {"GET": [Req("project:view", 200, kwargs={"digest": WEIGHTS_SHA})]},
    "artifact-detail": {"GET": [Req("project:view", 200, kwargs={"workspace": "acme", "name": "matrix-data"})]},
    # the workspace's named artifacts: anyone who sees the workspace (the counts cover the runs they may view)
    "workspace-artifacts": {"GET": [Req("workspace:view", 200)]},
    # a version's lineage archive: whoever sees a run linking it; runs without the export action are left out
    "artifact-version-lineage": {"GET": [Req("project:view", 200, kwargs={"digest": TRACKED_SHA})]},
    # erasing the consumers of a version: manage on each consumer's project (a blank reason: 400, nothing deleted)
    "artifact-version-erasure": {
        "GET": [Req("project:manage", 200, kwargs={"digest": TRACKED_SHA})],
        "POST": [Req("project:manage", 400, data={"reason": ""}, format="json", kwargs={"digest": TRACKED_SHA})],
    },
    # GDPR erasures: a project's records and erasing listed runs take manage (a blank reason: 400, nothing deleted)
    "erasure-list": {
        "GET": [Req("project:manage", 200, query=ACME_VISION)],
        "POST": [Req("project:manage", 400, data={"runs": ["acme/vision/VIS-1"], "reason": ""}, format="json")],
    },
    # the world's record of an erased run of acme/vision
    "erasure-detail": {"GET": [Req("project:manage", 200, kwargs={"erasure_id": "{erasure_id}"})]},
    "run-series": {"GET": [Req("project:view", 200, query={"path": "train/loss"})]},
    "run-series-points": {"GET": [Req("project:view", 200, query={"path": "train/loss"})]},
    "run-uploads": {"POST": [Req("project:write", 201, data=_file, format="multipart")]},
    "run-files": {"GET": [Req("project:view", 200, query={"path": "model/weights"})]},
    "run-file-download": {"GET": [Req("project:view", 200, query={"path": "model/weights"})]},
    "run-file-url": {"GET": [Req("project:view", 200, query={"path": "model/weights"})]},
    "run-file-info": {"GET": [Req("project:view", 200, query={"path": "model/weights"})]},
    "run-file-preview": {"GET": [Req("project:view", 200, query={"path": "images/sample", "kind": "thumbnail"})]},
    # The blob store is a local folder in these tests: an allowed caller reaches the service, which
    # answers 409 direct_upload_unavailable (the right is checked first).
    "run-direct-upload": {"POST": [Req("project:write", 409, data={"sha256": SHA, "size": 3})]},
    # The pending upload exists but nothing was PUT to its URL: 409 upload_incomplete once allowed.
    "run-direct-upload-complete": {"POST": [Req("project:write", 409, data={})]},
    # Listing asks only to see the project; the list holds the exports the caller may export.
    "export-list": {
        "GET": [Req("project:view", 200, query=ACME_VISION)],
        "POST": [Req("project:export", 202, data=ACME_VISION)],
    },
    "export-detail": {"GET": [Req("project:export", 200, expect=EXPORT_INVISIBLE_WITHOUT_EXPORT)]},
    "export-download": {"GET": [Req("project:export", 200, expect=EXPORT_INVISIBLE_WITHOUT_EXPORT)]},
    # --- the model registry: a model belongs to its home project (acme/vision); "matrix-model" v1 is
    # in production with the alias "champion". Its workspace is listed for whoever sees acme ---
    "registered-model-list": {
        "GET": [Req("workspace:view", 200)],
        "POST": [Req("project:write", 201, data={"name": "matrix-new-model", "project": "vision"})],
    },
    "registered-model-detail": {
        "GET": [Req("project:view", 200)],
        "PATCH": [Req("project:write", 200, data={"description": "matrix"})],
        "DELETE": [Req("project:delete", 204)],
    },
    "model-version-list": {
        "GET": [Req("project:view", 200)],
        "POST": [Req("project:write", 201, data={"run": "acme/vision/VIS-1", "path": "model/weights"})],
    },
    "model-version-detail": {
        "GET": [Req("project:view", 200)],
        "PATCH": [Req("project:write", 200, data={"description": "matrix"})],
        "DELETE": [Req("project:delete", 204)],
    },
    "model-version-stage": {"POST": [Req("project:write", 200, data={"stage": "staging"})]},
    "model-version-download": {"GET": [Req("project:view", 200)]},
    "model-stage-version": {"GET": [Req("project:view", 200)]},
    "model-stage-download": {"GET": [Req("project:view", 200)]},
    "model-alias": {
        "GET": [Req("project:view", 200)],
        "PUT": [Req("project:write", 200, data={"version": 1})],
        "DELETE": [Req("project:write", 204)],
    },
    # --- MLflow-compatible API (MLflow's error shape); the run is VIS-1 by its MLflow id ---
    "mlflow-api": MLFLOW,
    "mlflow-ajax-api": MLFLOW,
    "mlflow-artifacts-list": {
        "GET": [Req("project:view", 200, query={"path": "{experiment_id}/{run_uuid}/artifacts"})],
        # without a path after the route nothing is found, before any look-up of a run
        "PUT": [Req("signed_in", 404, data=b"a few bytes", format="octet")],
        "DELETE": [Req("signed_in", 501)],
    },
    "mlflow-artifacts": {
        "GET": [Req("project:view", 200, kwargs={"artifact_path": "{experiment_id}/{run_uuid}/artifacts/model.bin"})],
        "PUT": [
            Req(
                "project:write",
                200,
                kwargs={"artifact_path": "{experiment_id}/{run_uuid}/artifacts/notes.txt"},
                data=b"a few bytes",
                format="octet",
            )
        ],
        # deleting artifacts is not implemented for anyone signed in
        "DELETE": [Req("signed_in", 501, kwargs={"artifact_path": "{experiment_id}/{run_uuid}/artifacts/notes.txt"})],
    },
    # --- UI ---
    "projects:workspace_list": {"GET": [Req("signed_in", 200)]},
    "projects:project_list": {"GET": [Req("workspace:view", 200)]},
    "runs:run_list": {
        "GET": [Req("project:view", 200)],
        "POST": [
            Req("project:write", 302, data={"action": "tag", "runs": "VIS-1", "tag": "matrix"}, label="tag"),
            Req("project:delete", 302, data={"action": "delete", "runs": "VIS-1"}, label="delete"),
        ],
    },
    "runs:column_chooser": {"GET": [Req("project:view", 200)]},
    "runs:saved_views": {
        "POST": [
            Req("project:view", 302, data={"name": "mine"}, label="save"),
            Req("project:view", 302, data={"delete": "{saved_view}"}, expect=NOT_THE_VIEWS_OWNER, label="delete"),
        ]
    },
    "runs:trash": {"GET": [Req("project:view", 200)]},
    # the run table's view as a CSV/Parquet download
    "runs:run_export": {"GET": [Req("project:export", 200, query={"format": "csv"})]},
    "runs:compare": {
        "GET": [Req("project:view", 200, query={"runs": "VIS-1"})],
        # "Compare selected" posts the selection and is redirected to a clean ?runs= address
        "POST": [Req("project:view", 302, data={"runs": ["VIS-1"]})],
    },
    "runs:chart_data": {"GET": [Req("project:view", 200, query={"runs": "VIS-1", "path": "train/loss"})]},
    "runs:dashboard": {"GET": [Req("project:view", 200)]},
    "runs:dashboard_chart_data": {"GET": [Req("project:view", 200, query={"runs": "VIS-1", "path": "train/loss"})]},
    "runs:run_detail": {"GET": [Req("project:view", 200)]},
    "artifact-run-graph": {"GET": [Req("project:view", 200)]},
    # a named artifact is reachable through runs the caller may view (the world's run tracked it)
    "artifact-page": {"GET": [Req("project:view", 200, kwargs={"workspace": "acme", "name": "matrix-data"})]},
    # a version's whole lineage as a ZIP: whoever sees it; runs without the export action are listed as left out
    "artifact-lineage-record": {"GET": [Req("project:view", 200, kwargs={"workspace": "acme", "digest": TRACKED_SHA})]},
    # the workspace's named artifacts, counted over the runs each caller may view
    "artifact-list": {"GET": [Req("workspace:view", 200)]},
    # erasing the runs that consumed a version: manage on every consumer's project (a wrong confirmation: 400)
    "artifact-erase-consumers": {
        "GET": [Req("project:manage", 200, kwargs={"workspace": "acme", "digest": TRACKED_SHA})],
        "POST": [
            Req(
                "project:manage",
                400,
                data={"confirm": "wrong", "reason": "matrix"},
                kwargs={"workspace": "acme", "digest": TRACKED_SHA},
            )
        ],
    },
    "runs:run_edit": {"POST": [Req("project:write", 302, data={"name": "renamed"})]},
    "runs:run_notes": {
        "GET": [Req("project:view", 200), Req("project:write", 200, query={"edit": "1"}, label="editor")],
        "POST": [Req("project:write", 302, data={"notes": "# better"})],
    },
    "runs:run_diffs": {"GET": [Req("project:view", 200, query={"runs": "VIS-1"})]},
    "runs:run_log": {"GET": [Req("project:view", 200, query={"path": "stdout"})]},
    "runs:run_gallery": {"GET": [Req("project:view", 200, query={"path": "images/samples"})]},
    "runs:run_file_thumb": {"GET": [Req("project:view", 200, query={"path": "images/samples", "step": "0"})]},
    "runs:compare_media": {"GET": [Req("project:view", 200, query={"runs": "VIS-1"})]},
    "runs:run_file_preview": {"GET": [Req("project:view", 200, query={"path": "images/sample"})]},
    "runs:run_file_raw": {"GET": [Req("project:view", 200, query={"path": "images/sample"})]},
    "runs:run_file_set_zip": {"GET": [Req("project:view", 200, query={"path": "artifacts"})]},
    # --- workspace pages (members, teams, custom roles, service accounts) and project creation ---
    "projects:project_create": {
        "GET": [Req("workspace:write", 200)],
        "POST": [Req("workspace:write", 302, data={"slug": "matrix-new", "visibility": "private"})],
    },
    "projects:workspace_members": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 302, data={"member": "stranger", "role": "member"})],
    },
    # the contributor's membership of acme
    "projects:workspace_member": {"POST": [Req("workspace:manage", 302, data={"role": "admin"})]},
    "projects:workspace_member_remove": {
        # anyone may leave a workspace: the contributor confirms and removes their own membership
        "GET": [Req("workspace:manage", 200, expect={"contributor": 200})],
        "POST": [Req("workspace:manage", 302, expect={"contributor": 302})],
    },
    "projects:team_list": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 302, data={"name": "matrix-team"})],
    },
    "projects:team_detail": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 302, data={"member": "stranger"})],
    },
    "projects:team_delete": {"GET": [Req("workspace:manage", 200)], "POST": [Req("workspace:manage", 302)]},
    "projects:custom_role_list": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 302, data={"name": "readers", "actions": ["view", "export"]})],
    },
    # the custom role "log runs"
    "projects:custom_role_edit": {
        "GET": [Req("workspace:manage", 200)],
        "POST": [Req("workspace:manage", 302, data={"name": "log runs", "actions": ["view", "write", "export"]})],
    },
    "projects:custom_role_delete": {"GET": [Req("workspace:manage", 200)], "POST": [Req("workspace:manage", 302)]},
    "projects:service_account_list": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 302, data={"username": "matrix-bot", "role": "member"})],
    },
    # ci-bot; a new token's secret is shown on the answer itself (200), never again
    "projects:service_account_detail": {
        "GET": [Req("workspace:member", 200)],
        "POST": [Req("workspace:manage", 200, data={"name": "deploy", "scope": "read", "expires": "30"})],
    },
    "projects:service_account_token_revoke": {
        "GET": [Req("workspace:manage", 200, kwargs={"token_id": "{service_token}"})],
        "POST": [Req("workspace:manage", 302, kwargs={"token_id": "{service_token}"})],
    },
    # --- project pages ---
    "projects:project_members": {
        "GET": [Req("project:view", 200)],
        "POST": [Req("project:manage", 302, data={"member": "stranger", "role": "role:viewer"})],
    },
    # the viewer's grant on acme/vision
    "projects:project_member": {"POST": [Req("project:manage", 302, data={"role": "role:contributor"})]},
    "projects:project_member_remove": {"GET": [Req("project:manage", 200)], "POST": [Req("project:manage", 302)]},
    "projects:project_settings": {
        "GET": [Req("project:manage", 200)],
        "POST": [Req("project:manage", 302, data={"description": "new words", "visibility": "workspace"})],
    },
    # --- a project's webhooks: managing and seeing them (with their delivery log) is the project's manage ---
    "webhooks:webhook_list": {
        "GET": [Req("project:manage", 200)],
        "POST": [Req("project:manage", 302, data={"url": "https://93.184.216.34/new", "events": ["run.created"]})],
    },
    "webhooks:webhook_detail": {
        "GET": [Req("project:manage", 200)],
        "POST": [Req("project:manage", 302, data={"url": "https://93.184.216.34/b", "events": ["run.failed"]})],
    },
    "webhooks:webhook_delete": {"POST": [Req("project:manage", 302)]},
    "webhooks:webhook_ping": {"POST": [Req("project:manage", 302)]},
    "webhooks:webhook_redeliver": {"POST": [Req("project:manage", 302)]},
    # --- the model registry's pages: a workspace's models, a model's page, a stage change (HTMX or plain POST) ---
    "registry:model_list": {"GET": [Req("workspace:view", 200)]},
    "registry:model_detail": {"GET": [Req("project:view", 200, kwargs={"name": "matrix-model"})]},
    # deleting a run for good (GDPR): the project's manage; a wrong confirmation answers 400, deleting nothing
    "runs:run_erase": {
        "GET": [Req("project:manage", 200)],
        "POST": [Req("project:manage", 400, data={"confirm": "not-the-run", "reason": "matrix"})],
    },
    # registering a run's file field from its page: the run's project's write (its run is invisible: 404)
    "registry:register_version": {
        "POST": [Req("project:write", 302, data={"run": "{run_uuid}", "path": "model/weights", "name": "matrix-model"})]
    },
    "registry:version_stage": {
        "POST": [Req("project:write", 302, data={"stage": "staging"}, kwargs={"name": "matrix-model"})]
    },
    # deleting a project takes manage on its workspace: its project owner sees it but may not (403)
    "projects:project_delete": {"POST": [Req("workspace:manage", 302, data={"confirm": "vision"})]},
    # --- one's own API tokens: the page lists only one's own; another's token is not found ---
    "projects:token_list": {
        "GET": [Req("signed_in", 200)],
        "POST": [Req("signed_in", 200, data={"name": "laptop", "scope": "read", "expires": "30"})],
    },
    # project_owner's read token
    "projects:token_revoke": {
        "GET": [Req("signed_in", 404, expect={"project_owner": 200})],
        "POST": [Req("signed_in", 404, expect={"project_owner": 302})],
    },
    # --- accounts UI (one's own account) ---
    "accounts:password_change": {
        "GET": [Req("signed_in", 200)],
        # a wrong old password: the form answers (200) without changing anything or the session
        "POST": [
            Req(
                "signed_in",
                200,
                data={"old_password": "wrong", "new_password1": "x-Very-long-9", "new_password2": "x-Very-long-9"},
            )
        ],
    },
    "accounts:password_change_done": {"GET": [Req("signed_in", 200)]},
}


def expected_status(principal: str, req: Req, *, ui: bool) -> int:
    """The status ``principal`` must get for ``req``, from the tables above."""
    if principal == "anonymous" or (ui and principal in TOKEN_ONLY):
        return 302 if ui else 401
    if principal in req.expect:
        return req.expect[principal]
    if req.needs == "signed_in":
        return req.ok
    scope, action = req.needs.split(":")
    held = (ON_PROJECT if scope == "project" else ON_WORKSPACE)[principal]
    if "view" not in held:
        return 404
    return req.ok if action in held else 403
