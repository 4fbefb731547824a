"""What the run endpoints share: the run look-up by reference, query parameters and the query engine's answers."""

import json

from django.db.models import Prefetch
from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

from tracker.api.views import ScopedGenericAPIView

from ...errors import ApiError
from ...models import Attribute, AttributeType, FileEntry, Run
from ...paths import PathError, safe_relpath, validate_path
from ...query import (
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
    RunQuery,
    parse_list,
    query_budget,
)
from ...query.budget import retry_after_seconds
from ...refs import parse_run_ref
from ..serializers import (
    FileQuerySerializer,
)


class RunPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000


def _tags_prefetch():
    return Prefetch("attributes", queryset=Attribute.objects.filter(path="sys/tags"), to_attr="tag_attributes")


class RunScopedView(ScopedGenericAPIView):
    """Views of one run, addressed by UUID or ``workspace/project/KEY-N``."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view").with_related()

    def get_run(self) -> Run:
        ref = self.kwargs["run_ref"]
        parsed = parse_run_ref(ref)
        run = self.get_queryset().filter(parsed.q()).first() if parsed else None
        if run is None:
            raise Http404(f"run {ref!r} not found")
        return run

    def get_attribute(self, run: Run, path: str, types=None) -> Attribute:
        try:
            validate_path(path)
        except PathError as exc:
            raise ValidationError({"path": f"invalid path: {exc}"}) from None
        attr = Attribute.objects.filter(run=run, path=path).first()
        if attr is None:
            raise Http404(f"run {run.human_id} has no field {path!r}")
        if types and attr.type not in types:
            raise ApiError(
                409,
                "wrong_type",
                f"field {path!r} is a {attr.type}, not a {' or '.join(sorted(types))}",
                field="path",
                path=path,
                stored_type=attr.type,
            )
        return attr

    def get_file_entry(self):
        """The file a request names: ``path``, plus ``relpath`` for a file set or ``step`` for a file series."""
        query = self.query(FileQuerySerializer)
        run = self.get_run()
        attr = self.get_attribute(
            run, query["path"], {AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES}
        )
        entries = FileEntry.objects.filter(attribute=attr).select_related("blob")
        if attr.type == AttributeType.FILE_SET:
            if not query.get("relpath"):
                raise ApiError(400, "invalid", "relpath: required for a file set", field="relpath")
            wanted = query["relpath"]
            if not entries.filter(relpath=wanted).exists():
                # A file set stored before relpaths were checked is listed under its sanitised relpath.
                legacy = [pk for pk, relpath in entries.values_list("pk", "relpath") if safe_relpath(relpath) == wanted]
                entries = entries.filter(pk__in=legacy[:1])
            else:
                entries = entries.filter(relpath=wanted)
        elif attr.type == AttributeType.FILE_SERIES:
            if "step" not in query:
                raise ApiError(400, "invalid", "step: required for a file series", field="step")
            entries = entries.filter(step=query["step"])
        entry = entries.first()
        if entry is None:
            raise Http404("no such file in this field")
        return run, attr, entry

    def query(self, serializer_class):
        data = serializer_class(data=self.request.query_params)
        data.is_valid(raise_exception=True)
        return data.validated_data


def _query_error(exc, field="query"):
    return ApiError(
        400,
        "invalid_query",
        str(exc),
        field=getattr(exc, "field", None) or field,
        position=exc.position,
        expected=getattr(exc, "expected", None),
    )


def _query_answer(fn, field="query"):
    """Run the query engine's reads within RUNSTORE_QUERY_TIMEOUT_MS: a query error is a 400 naming
    the parameter, a read past the budget a 503 with Retry-After."""
    try:
        with query_budget():
            return fn()
    except (QueryError, QuerySyntaxError) as exc:
        raise _query_error(exc, field) from None
    except QueryTimeout as exc:
        raise ApiError(
            503,
            "query_timeout",
            exc.message,
            field="query",
            timeout_ms=exc.budget_ms,
            headers={"Retry-After": str(retry_after_seconds())},
        ) from None


def _query_params(request, serializer_class=None):
    """The query parameters: the URL's for GET; for POST the JSON body (checked by ``serializer_class``),
    where ``limit``/``offset`` in the URL (the ``next`` link of a page) override the body's."""
    if request.method != "POST":
        return request.query_params
    if not isinstance(request.data, dict):
        raise ApiError(400, "invalid", "the body must be a JSON object of query parameters", field="body")
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    params = dict(data.validated_data)
    for name in ("limit", "offset"):
        if name in request.query_params:
            params[name] = request.query_params[name]
    return params


def _run_query(user, params, project, **extra) -> RunQuery:
    return RunQuery(
        user,
        project,
        query=params.get("query", "") or "",
        sort=parse_list(params.get("sort")) or ["-sys/creation_time"],
        columns=parse_list(params.get("columns")),
        group_by=parse_list(params.get("group_by")),
        group=_group_key(params.get("group")),
        aggregates=parse_list(params.get("aggregates")),
        **extra,
    )


def _group_key(raw):
    if raw in (None, ""):
        return None
    if isinstance(raw, list):
        return raw
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, ValueError):
        raise ApiError(
            400, "invalid", "group: must be a JSON list with one value per group_by field", field="group"
        ) from None
    if not isinstance(value, list):
        raise ApiError(400, "invalid", "group: must be a JSON list", field="group")
    return value


MAX_OFFSET = 2**62
