"""The MLflow REST endpoints: one view per URL prefix, dispatching on (method, endpoint) to a handler.

Authentication, request-rate quotas and the permission module apply as for the native API (these
are DRF views on ``ScopedGenericAPIView``); every error answers in MLflow's shape.
"""

import hashlib
import json
import logging
import math
import posixpath

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import transaction
from django.http import HttpResponse, HttpResponseBase
from rest_framework import exceptions
from rest_framework.response import Response

from projects import permissions
from projects.models import Project
from tracker.api.errors import is_busy
from tracker.api.views import ScopedGenericAPIView

from .. import services
from ..downloads import ranged_response
from ..models import AttributeType, FileEntry
from ..paths import relpath_error
from ..storage import open_blob
from ..uploads import iter_body
from . import experiments, logged_models, registry, tracking
from .errors import MlflowError, invalid, not_found
from .filters import page_offset, page_token

logger = logging.getLogger(__name__)
MAX_BATCH_BODY = 1_000_000  # MLflow's limit on a log-batch request


def _error_response(error: MlflowError) -> Response:
    return Response(error.as_dict(), status=error.status, headers=error.headers)


class MlflowView(ScopedGenericAPIView):
    """Base: MLflow's error shape for every failure, including authentication and throttling."""

    # MLflow's own protocol (docs/mlflow.md), not Runstore's: kept out of the OpenAPI schema of /api/v1/.
    schema = None

    def scoped_queryset(self):
        return Project.objects.for_user(self.request.user, "view")

    def handle_exception(self, exc):
        error = tracking.translate_error(exc)
        if error is None:
            if isinstance(exc, exceptions.Throttled):
                wait = str(int(math.ceil(exc.wait))) if exc.wait else "1"
                error = MlflowError(
                    "REQUEST_LIMIT_EXCEEDED", str(exc.detail), status=429, headers={"Retry-After": wait}
                )
            elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
                response = _error_response(MlflowError("UNAUTHENTICATED", str(exc.detail), status=401))
                response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
            elif isinstance(exc, exceptions.PermissionDenied):
                error = MlflowError("PERMISSION_DENIED", str(exc.detail))
            elif isinstance(exc, exceptions.ParseError):
                error = MlflowError("MALFORMED_REQUEST", str(exc.detail), status=400)
            elif isinstance(exc, exceptions.APIException):
                error = MlflowError("BAD_REQUEST", str(exc.detail), status=exc.status_code)
            elif is_busy(exc):
                error = MlflowError(
                    "TEMPORARILY_UNAVAILABLE", "the database is busy; retry", headers={"Retry-After": "2"}
                )
            else:
                raise exc
        return _error_response(error)


def _body(request) -> dict:
    if request.method == "GET":
        out: dict = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            out[key] = values if len(values) > 1 or key in ("experiment_ids", "order_by") else values[0]
        return out
    data = request.data
    if not isinstance(data, dict):
        raise MlflowError("MALFORMED_REQUEST", "the request body must be a JSON object", status=400)
    return data


def _run(request, body, *, need_run_id=True):
    return tracking.get_run(request.user, body.get("run_id") or body.get("run_uuid"))


def _max_results(body, default, limit):
    value = body.get("max_results")
    if value in (None, ""):
        return default
    number = tracking._as_int(value, "max_results")
    if number <= 0:
        raise invalid(f"Invalid value {number} for parameter 'max_results': it must be positive")
    return min(number, limit)


# --- handlers: (request, body) -> JSON-able dict -------------------------------------


def experiments_create(request, body):
    project = experiments.create(request.user, body.get("name"), body.get("tags"))
    return {"experiment_id": str(project.pk)}


def experiments_get(request, body):
    project = experiments.get(request.user, body.get("experiment_id"))
    return {"experiment": experiments.to_dict(project, request.user)}


def experiments_get_by_name(request, body):
    project = experiments.get_by_name(request.user, body.get("experiment_name"))
    return {"experiment": experiments.to_dict(project, request.user)}


def experiments_search(request, body):
    view_type = body.get("view_type") or "ACTIVE_ONLY"
    if view_type not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        raise invalid(f"Invalid view_type {view_type!r}")
    order = body.get("order_by") or []
    rows, next_offset = experiments.search(
        request.user,
        view_type=view_type,
        filter_string=body.get("filter") or "",
        order_by=[order] if isinstance(order, str) else order,
        max_results=_max_results(body, 1000, 50000),
        offset=page_offset(body.get("page_token")),
    )
    answer: dict = {"experiments": rows}
    if next_offset is not None:
        answer["next_page_token"] = page_token(next_offset)
    return answer


def experiments_update(request, body):
    project = experiments.get(request.user, body.get("experiment_id"))
    experiments.rename(request.user, project, body.get("new_name"))
    return {}


def experiments_delete(request, body):
    experiments.set_deleted(request.user, experiments.get(request.user, body.get("experiment_id")), True)
    return {}


def experiments_restore(request, body):
    experiments.set_deleted(request.user, experiments.get(request.user, body.get("experiment_id")), False)
    return {}


def experiments_set_tag(request, body):
    project = experiments.get(request.user, body.get("experiment_id"))
    experiments.set_tag(request.user, project, body.get("key"), body.get("value"))
    return {}


def experiments_delete_tag(request, body):
    project = experiments.get(request.user, body.get("experiment_id"))
    experiments.delete_tag(request.user, project, body.get("key"))
    return {}


def runs_create(request, body):
    run = tracking.create_run(request.user, body)
    return {"run": tracking.new_run_dict(run, body)}


def runs_get(request, body):
    return {"run": tracking.runs_dicts([_run(request, body)])[0]}


def runs_update(request, body):
    run = tracking.update_run(request.user, _run(request, body), body)
    return {"run_info": tracking.run_info(run)}


def runs_delete(request, body):
    tracking.set_deleted(request.user, _run(request, body), True)
    return {}


def runs_restore(request, body):
    tracking.set_deleted(request.user, _run(request, body), False)
    return {}


def runs_set_tag(request, body):
    tracking.set_tag(request.user, _run(request, body), body.get("key"), body.get("value"))
    return {}


def runs_delete_tag(request, body):
    tracking.delete_tag(request.user, _run(request, body), body.get("key"))
    return {}


def runs_log_parameter(request, body):
    param = {"key": body.get("key"), "value": body.get("value")}
    tracking.log_batch(request.user, _run(request, body), params=[param])
    return {}


def runs_log_metric(request, body):
    metric = {k: body.get(k) for k in ("key", "value", "timestamp", "step")}
    if "value" not in body:
        raise invalid("Missing value for required parameter 'value'")
    run = _run(request, body)
    tracking.log_batch(request.user, run, metrics=[metric])
    linked = {k: body.get(k) for k in ("model_id", "dataset_name", "dataset_digest")}
    logged_models.record_metrics(request.user, run, [{**metric, **linked}])
    return {}


def runs_log_batch(request, body):
    size = int(request.headers.get("Content-Length") or 0)
    if size > MAX_BATCH_BODY:
        raise invalid(f"Batched logging API requests must be at most {MAX_BATCH_BODY} bytes, got {size}")
    run = _run(request, body)
    tracking.log_batch(request.user, run, metrics=body.get("metrics"), params=body.get("params"), tags=body.get("tags"))
    logged_models.record_metrics(request.user, run, body.get("metrics"))
    return {}


def runs_log_outputs(request, body):
    logged_models.log_outputs(request.user, _run(request, body), body.get("models") or [])
    return {}


def runs_log_inputs(request, body):
    tracking.log_inputs(request.user, _run(request, body), body.get("datasets") or [])
    return {}


def runs_log_model(request, body):
    tracking.record_logged_model(request.user, _run(request, body), body.get("model_json"))
    return {}


def runs_search(request, body):
    runs, next_offset = tracking.search_runs(request.user, body)
    answer: dict = {"runs": runs}
    if next_offset is not None:
        answer["next_page_token"] = page_token(next_offset)
    # Written as is: every value is already JSON's (a metric's NaN or infinity is a string, as MLflow
    # writes it), so the renderer's walk through the whole answer for such floats is not needed.
    content = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return HttpResponse(content.encode(), content_type="application/json")


def metrics_get_history(request, body):
    run = _run(request, body)
    max_results = _max_results(body, None, 25000)
    content = tracking.metric_history_json(
        run, body.get("metric_key"), max_results=max_results, page_token=body.get("page_token")
    )
    return HttpResponse(content, content_type="application/json")


def artifacts_list(request, body):
    run = _run(request, body)
    return {"root_uri": tracking.run_info(run)["artifact_uri"], "files": _list_files(run, body.get("path") or "")}


def logged_models_create(request, body):
    return {"model": logged_models.to_dict(logged_models.create(request.user, body))}


def logged_models_search(request, body):
    models, token = logged_models.search(request.user, body)
    answer: dict = {"models": models}
    if token:
        answer["next_page_token"] = token
    return answer


# Handlers of one logged model: (request, body, model_id, rest of the path) -> JSON-able dict.


def logged_model_get(request, body, model_id, rest):
    allow_deleted = str(body.get("allow_deleted", "")).lower() == "true"
    return {"model": logged_models.to_dict(logged_models.get(request.user, model_id, allow_deleted=allow_deleted))}


def logged_model_finalize(request, body, model_id, rest):
    return {"model": logged_models.to_dict(logged_models.finalize(request.user, model_id, body.get("status")))}


def logged_model_delete(request, body, model_id, rest):
    logged_models.delete(request.user, model_id)
    return {}


def logged_model_set_tags(request, body, model_id, rest):
    logged_models.set_tags(request.user, model_id, body.get("tags"))
    return {}


def logged_model_delete_tag(request, body, model_id, rest):
    logged_models.delete_tag(request.user, model_id, rest)
    return {}


def logged_model_log_params(request, body, model_id, rest):
    logged_models.log_params(request.user, model_id, body.get("params"))
    return {}


def logged_model_list_artifacts(request, body, model_id, rest):
    model = logged_models.get(request.user, model_id)
    relpath = _checked_relpath(body.get("artifact_directory_path") or "")
    files = _list_files(logged_models.require_files(model), relpath, logged_models.files_path(model))
    return {"root_uri": logged_models.artifact_uri(model), "files": files}


def logged_model_download(request, body, model_id, rest):
    model = logged_models.get(request.user, model_id)
    relpath = _checked_relpath(body.get("artifact_file_path") or "")
    if not relpath:
        raise MlflowError("BAD_REQUEST", 'Request must include the "artifact_file_path" query parameter.')
    return _download(request, logged_models.require_files(model), logged_models.files_path(model), relpath)


MODEL_HANDLERS = {
    ("GET", ""): logged_model_get,
    ("PATCH", ""): logged_model_finalize,
    ("DELETE", ""): logged_model_delete,
    ("PATCH", "tags"): logged_model_set_tags,
    ("DELETE", "tags/"): logged_model_delete_tag,
    ("POST", "params"): logged_model_log_params,
    ("GET", "artifacts/directories"): logged_model_list_artifacts,
    ("GET", "artifacts/files"): logged_model_download,
}


HANDLERS = {
    ("POST", "experiments/create"): experiments_create,
    ("GET", "experiments/get"): experiments_get,
    ("GET", "experiments/get-by-name"): experiments_get_by_name,
    ("POST", "experiments/search"): experiments_search,
    ("GET", "experiments/search"): experiments_search,
    ("POST", "experiments/update"): experiments_update,
    ("POST", "experiments/delete"): experiments_delete,
    ("POST", "experiments/restore"): experiments_restore,
    ("POST", "experiments/set-experiment-tag"): experiments_set_tag,
    ("POST", "experiments/delete-experiment-tag"): experiments_delete_tag,
    ("POST", "runs/create"): runs_create,
    ("GET", "runs/get"): runs_get,
    ("POST", "runs/update"): runs_update,
    ("POST", "runs/delete"): runs_delete,
    ("POST", "runs/restore"): runs_restore,
    ("POST", "runs/set-tag"): runs_set_tag,
    ("POST", "runs/delete-tag"): runs_delete_tag,
    ("POST", "runs/log-parameter"): runs_log_parameter,
    ("POST", "runs/log-metric"): runs_log_metric,
    ("POST", "runs/log-batch"): runs_log_batch,
    ("POST", "runs/log-inputs"): runs_log_inputs,
    ("POST", "runs/log-model"): runs_log_model,
    ("POST", "runs/search"): runs_search,
    ("GET", "runs/search"): runs_search,
    ("GET", "metrics/get-history"): metrics_get_history,
    ("GET", "artifacts/list"): artifacts_list,
    ("POST", "runs/outputs"): runs_log_outputs,
    ("POST", "logged-models"): logged_models_create,
    ("POST", "logged-models/search"): logged_models_search,
    **registry.HANDLERS,  # the Model Registry: registered-models/*, model-versions/*
}
WRITES = {"POST", "PATCH", "DELETE"}
# No transaction around these: searches sent as POST (reads: the query engine bounds its own), and
# run creation, one transaction of its own whose answer needs no read after it, so the project's run
# counter it locks is released as soon as the run is written.
NO_OUTER_TRANSACTION = {runs_create, runs_search, experiments_search, logged_models_search}


def _model_handler(method: str, endpoint: str):
    """``(handler, model_id, rest)`` for ``logged-models/<model_id>[/...]``, or None."""
    head, _, tail = endpoint.partition("/")
    if head != "logged-models" or not tail or tail == "search":
        return None
    model_id, _, rest = tail.partition("/")
    if rest.startswith("tags/") and len(rest) > len("tags/"):
        handler = MODEL_HANDLERS.get((method, "tags/"))
        return (handler, model_id, rest[len("tags/") :]) if handler else None
    handler = MODEL_HANDLERS.get((method, rest))
    return (handler, model_id, rest) if handler else None


class MlflowApiView(MlflowView):
    """``/api/2.0/mlflow/<endpoint>`` (and ``/ajax-api/2.0/mlflow/<endpoint>``)."""

    def _dispatch(self, request, endpoint: str):
        endpoint = endpoint.strip("/")
        handler = HANDLERS.get((request.method, endpoint))
        model_route = None if handler else _model_handler(request.method, endpoint)
        if model_route is not None:
            model_handler, model_id, rest = model_route
            handler = lambda request, body: model_handler(request, body, model_id, rest)  # noqa: E731
        if handler is None:
            if any(e == endpoint for _, e in HANDLERS):
                raise MlflowError("ENDPOINT_NOT_FOUND", f"{request.method} is not allowed on {endpoint}", status=405)
            raise MlflowError("ENDPOINT_NOT_FOUND", f"this server does not implement {endpoint!r}", status=404)
        body = _body(request)
        with permissions.remember_actions():  # one permission query per project per request
            if request.method in WRITES and handler not in NO_OUTER_TRANSACTION:
                with transaction.atomic():
                    answer = handler(request, body)
            else:
                answer = handler(request, body)
        return answer if isinstance(answer, HttpResponseBase) else Response(answer)

    def get(self, request, endpoint):
        return self._dispatch(request, endpoint)

    def post(self, request, endpoint):
        return self._dispatch(request, endpoint)

    def patch(self, request, endpoint):
        return self._dispatch(request, endpoint)

    def delete(self, request, endpoint):
        return self._dispatch(request, endpoint)


# --- the artifact proxy: /api/2.0/mlflow-artifacts/artifacts/<experiment_id>/<run_id>/artifacts/<path>
# and, for logged models, .../<experiment_id>/models/<model_id>/artifacts/<path> ---------------------


def _checked_relpath(relpath: str) -> str:
    relpath = (relpath or "").strip("/")
    if relpath and relpath_error(relpath):
        raise invalid(f"Invalid artifact path {relpath!r}: {relpath_error(relpath)}")
    return relpath


def _resolve_artifact_path(user, path: str):
    """``(run, file set path, relative path)`` of ``<experiment_id>/<run_id>/artifacts[/<path>]`` (the run's
    artifacts) or ``<experiment_id>/models/<model_id>/artifacts[/<path>]`` (a logged model's files)."""
    parts = [p for p in (path or "").strip("/").split("/") if p]
    if len(parts) < 3 or not parts[0].isdigit():
        parts = []
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        model = logged_models.get(user, parts[2])
        relpath = _checked_relpath("/".join(parts[4:]))
        return logged_models.require_files(model), logged_models.files_path(model), relpath
    if len(parts) < 3 or parts[2] != "artifacts":
        raise not_found(
            f"No artifact at {path!r}: paths look like <experiment_id>/<run_id>/artifacts/<path> "
            "or <experiment_id>/models/<model_id>/artifacts/<path>"
        )
    relpath = _checked_relpath("/".join(parts[3:]))
    return tracking.get_run(user, parts[1]), tracking.ARTIFACTS_PATH, relpath


def _entries(run, files_path: str = tracking.ARTIFACTS_PATH):
    return FileEntry.objects.filter(
        attribute__run=run, attribute__path=files_path, attribute__type=AttributeType.FILE_SET
    )


def _list_files(run, relpath: str, files_path: str = tracking.ARTIFACTS_PATH) -> list[dict]:
    relpath = relpath.strip("/")
    prefix = f"{relpath}/" if relpath else ""
    entries = _entries(run, files_path)
    if relpath and entries.filter(relpath=relpath).exists():
        return []  # a file is not a directory: MLflow's own stores list nothing under it
    files, dirs = [], set()
    for entry_relpath, size in entries.filter(relpath__startswith=prefix).values_list("relpath", "size"):
        rest = entry_relpath[len(prefix) :]
        head, slash, _ = rest.partition("/")
        if slash:
            dirs.add(head)
        else:
            files.append({"path": head, "is_dir": False, "file_size": size})
    return sorted([{"path": d, "is_dir": True} for d in dirs] + files, key=lambda f: f["path"])


def _download(request, run, files_path: str, relpath: str):
    entry = _entries(run, files_path).filter(relpath=relpath).select_related("blob").first() if relpath else None
    if entry is None:
        raise not_found(f"No artifact at {relpath!r} in run {run.uuid.hex}")
    return ranged_response(
        request,
        open_blob(entry.blob.storage_key),
        size=entry.size,
        content_type="application/octet-stream",
        filename=posixpath.basename(relpath),
    )


class ArtifactView(MlflowView):
    """Upload (PUT), download (GET) and list (GET without a file path, or ``?path=``) a run's artifacts
    and a logged model's files."""

    def get(self, request, artifact_path=""):
        registry_path = artifact_path or request.query_params.get("path", "")
        if registry_path.strip("/").startswith(f"{registry.ARTIFACT_PREFIX}/"):
            return _registry_files(request, registry_path, listing=not artifact_path)
        if not artifact_path:
            run, files_path, relpath = _resolve_artifact_path(request.user, request.query_params.get("path", ""))
            return Response({"files": _list_files(run, relpath, files_path)})
        run, files_path, relpath = _resolve_artifact_path(request.user, artifact_path)
        if relpath and _entries(run, files_path).filter(relpath=relpath).exists():
            return _download(request, run, files_path, relpath)
        listing = _list_files(run, relpath, files_path)
        if listing:
            return Response({"files": listing})
        raise not_found(f"No artifact at {relpath!r} in run {run.uuid.hex}")

    def put(self, request, artifact_path=""):
        with permissions.remember_actions():  # one permission query per project per request
            return self._put(request, artifact_path)

    def _put(self, request, artifact_path):
        run, files_path, relpath = _resolve_artifact_path(request.user, artifact_path)
        if not relpath:
            raise invalid("an artifact upload needs a file path after 'artifacts/'")
        tracking._require_active(run)
        permissions.require(request.user, "write", run.project)
        uploaded = _read_upload(request, posixpath.basename(relpath))
        try:
            with transaction.atomic():
                blob = services.store_upload(request.user, run, uploaded)
                ops = [{"op": "upload_set", "path": files_path, "files": [{"relpath": relpath, "sha256": blob.sha256}]}]
                tracking._apply(request.user, run, ops)
        finally:
            uploaded.close()
        return Response({})

    def delete(self, request, artifact_path=""):
        raise MlflowError("NOT_IMPLEMENTED", "deleting artifacts is not supported; delete the run instead", status=501)


def _registry_files(request, path: str, *, listing: bool):
    """A model version's own files (``get-download-uri``'s ``mlflow-artifacts:/registry/<model>/<version>``)."""
    version, relpath = registry.artifact_version(request.user, [p for p in path.strip("/").split("/") if p])
    relpath = _checked_relpath(relpath)
    files = list(registry.version_files(version))
    match = next((f for rel, f in files if rel == relpath), None) if relpath else None
    if match is not None and not listing:
        return ranged_response(
            request,
            open_blob(match.blob.storage_key),
            size=match.size,
            content_type="application/octet-stream",
            filename=posixpath.basename(relpath),
        )
    prefix = f"{relpath}/" if relpath else ""
    entries, dirs = [], set()
    for rel, f in files:
        if not rel.startswith(prefix):
            continue
        head, slash, _ = rel[len(prefix) :].partition("/")
        if slash:
            dirs.add(head)
        else:
            entries.append({"path": head, "is_dir": False, "file_size": f.size})
    if not entries and not dirs and not listing:
        raise not_found(f"No artifact at {relpath!r} in {version}")
    return Response({"files": sorted([{"path": d, "is_dir": True} for d in dirs] + entries, key=lambda e: e["path"])})


def _read_upload(request, name: str) -> TemporaryUploadedFile:
    """The request body streamed to a temporary file, hashed on the way (as the upload handler does)."""
    limit = settings.RUNSTORE_MAX_UPLOAD_BYTES
    declared = int(request.headers.get("Content-Length") or 0)
    if declared > limit:
        raise MlflowError(
            "INVALID_PARAMETER_VALUE", f"the artifact is larger than the upload limit of {limit} bytes", status=413
        )
    uploaded = TemporaryUploadedFile(name, "application/octet-stream", 0, None)
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in iter_body(request._request):  # the raw body: DRF has not read it (no parser ran)
            size += len(chunk)
            if size > limit:
                raise MlflowError(
                    "INVALID_PARAMETER_VALUE",
                    f"the artifact is larger than the upload limit of {limit} bytes",
                    status=413,
                )
            digest.update(chunk)
            uploaded.write(chunk)
    except BaseException:
        uploaded.close()  # a temporary file: closing deletes it
        raise
    uploaded.seek(0)
    uploaded.size = size
    uploaded.sha256 = digest.hexdigest()  # type: ignore[attr-defined]
    return uploaded
