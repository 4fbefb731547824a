import json
import math
import re

from django.db.models import Case, When
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views import View
from django.views.generic import DetailView

from projects import permissions
from tracker.ui import template_for

from .. import dashboard, services, table
from .. import series as series_store
from ..artifacts.models import RunArtifact
from ..attributes import attribute_value, sys_fields
from ..forms import RunEditForm
from ..lineage import run_lineage
from ..models import Attribute, AttributeType, FileEntry, RunState
from ..notes import MAX_NOTES_CHARS, render_markdown
from .base import ProjectScopedMixin, _int_param, chart_page

FIELDS_PER_NAMESPACE = 200
LOG_LINES = 500
FAILURE_STDERR_LINES = 20  # stderr lines shown under a failed run's traceback


class RunDetailView(ProjectScopedMixin, DetailView):
    template_name = "runs/run_detail.html"
    context_object_name = "run"
    fragments = ("header", "fields", "namespace", "charts", "lineage")

    def get_object(self, queryset=None):
        return self.get_run(self.kwargs["run_id"])

    def get_template_names(self):
        fragment = self.request.GET.get("fragment")
        return [template_for(self.request, self.template_name, fragment if fragment in self.fragments else "fields")]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        run = self.object
        fragment = self.request.GET.get("fragment")
        query = self.request.GET.get("q", "").strip()
        context.update(
            project=self.get_project(), query=query, can_write=permissions.can(self.request.user, "write", run.project)
        )
        context.update(header_context(run))
        if fragment == "header" and self.request.htmx:
            return context
        if fragment == "namespace":
            context["namespace_fields"] = self.namespace_fields(run, self.request.GET.get("ns", ""), query)
            return context
        if fragment == "charts":
            context.update(self.chart_page(run))
            return context
        if fragment == "lineage":
            context["artifacts"] = run_lineage(self.request.user, run)
            return context
        attrs = Attribute.objects.filter(run=run)
        if query:
            attrs = attrs.filter(path__icontains=query)
        # only paths and types: a run may have thousands; values are loaded per namespace when opened
        catalog = list(attrs.order_by("path").values_list("path", "type"))
        sys_rows = [f for f in sys_fields(run) if not query or query.lower() in f["path"].lower()]
        namespaces: dict[str, int] = {}
        for path, _ in catalog:
            ns = path.split("/", 1)[0]
            namespaces[ns] = namespaces.get(ns, 0) + 1
        if sys_rows:
            namespaces["sys"] = namespaces.get("sys", 0) + len(sys_rows)
        context["namespaces"] = sorted(namespaces.items())
        context["open_all"] = bool(query) and len(catalog) <= 200
        if context["open_all"]:
            context["fields_by_ns"] = {ns: self.namespace_fields(run, ns, query) for ns in namespaces}
        if fragment == "fields":
            return context
        types = {}
        for path, type_ in catalog:
            types.setdefault(type_, []).append(path)
        float_paths = types.get(AttributeType.FLOAT_SERIES, [])
        context["has_lineage"] = (
            bool(types.get(AttributeType.FILE) or types.get(AttributeType.FILE_SET))
            or any(p.endswith("/hash") for p in types.get(AttributeType.STRING, []))
            or RunArtifact.objects.filter(run=run).exists()  # versions sent by the API alone
        )
        monitoring_count = sum(1 for p in float_paths if p.startswith("monitoring/"))
        context.update(
            float_series_count=len(float_paths) - monitoring_count,
            monitoring_count=monitoring_count,
            string_series=types.get(AttributeType.STRING_SERIES, [])[:50],
            image_series=types.get(AttributeType.FILE_SERIES, [])[:20],
            file_fields=self.file_fields(
                run, types.get(AttributeType.FILE, []) + types.get(AttributeType.FILE_SET, [])
            ),
            file_sets=types.get(AttributeType.FILE_SET, [])[:50],
            **self.registry_form(run, types, context["can_write"]),
            can_manage=permissions.can(self.request.user, "manage", run.project),
            source=self.prefixed_values(run, "source_code/"),
            environment=self.prefixed_values(run, "environment/", limit=40),
            notes_html=render_markdown(run.description) if run.description.strip() else "",
            notes_editing=self.request.GET.get("notes") == "edit" and context["can_write"],
            max_notes=MAX_NOTES_CHARS,
        )
        context.update(self.chart_page(run))
        # the first charts' data is requested from <head>, before the page's CSS and scripts load
        first = [path for path, _ in context["chart_paths"][:4]]
        context["prefetch_paths_json"] = json.dumps(first) if first else ""
        return context

    def chart_page(self, run):
        monitoring = self.request.GET.get("group") == "monitoring"
        attrs = Attribute.objects.filter(run=run, type=AttributeType.FLOAT_SERIES)
        attrs = (
            attrs.filter(path__startswith="monitoring/")
            if monitoring
            else attrs.exclude(path__startswith="monitoring/")
        )
        _, context = chart_page(self.request, attrs.order_by("path").values_list("path", "count"))
        return {**context, "chart_group": "monitoring" if monitoring else ""}

    def namespace_fields(self, run, ns: str, query: str = ""):
        if ns == "sys":
            fields = [f for f in sys_fields(run) if not query or query.lower() in f["path"].lower()]
            attrs = Attribute.objects.filter(run=run, path__startswith="sys/")
        else:
            fields = []
            attrs = Attribute.objects.filter(run=run, path__startswith=ns + "/")
        if query:
            attrs = attrs.filter(path__icontains=query)
        attrs = attrs.order_by("path")[:FIELDS_PER_NAMESPACE]
        fields += [{"path": a.path, "type": a.type, "value": attribute_value(a)} for a in attrs]
        fields.sort(key=lambda f: f["path"])
        for f in fields:
            f["name"] = f["path"].split("/", 1)[1] if "/" in f["path"] else f["path"]
        return fields

    def registry_form(self, run, types, can_write: bool) -> dict:
        """The Files card's "register as a model version" form: the run's file and file-set fields,
        and the names of the workspace's models the user may see (for the name's suggestions)."""
        registrable = (types.get(AttributeType.FILE, []) + types.get(AttributeType.FILE_SET, []))[:100]
        if not (can_write and registrable):
            return {"registrable": []}
        from runs.registry.models import RegisteredModel, Stage

        names = (
            RegisteredModel.objects.for_user(self.request.user, "view")
            .filter(workspace_id=run.project.workspace_id)
            .order_by("name")
            .values_list("name", flat=True)[:200]
        )
        return {"registrable": registrable, "model_names": list(names), "model_stages": Stage.choices}

    def file_fields(self, run, paths):
        paths = paths[:50]
        entries = (
            FileEntry.objects.filter(attribute__run=run, attribute__path__in=paths)
            .select_related("attribute")
            .order_by("attribute__path", "relpath")[:200]
        )
        out = []
        for entry in entries:
            out.append(
                {
                    "path": entry.attribute.path,
                    "relpath": entry.relpath,
                    "name": entry.name or entry.relpath or entry.attribute.path,
                    "size": entry.size,
                    "mime_type": entry.mime_type,
                }
            )
        return out

    def prefixed_values(self, run, prefix, limit=20):
        return [
            {"path": a.path, "type": a.type, "value": attribute_value(a)}
            for a in Attribute.objects.filter(run=run, path__startswith=prefix)
            .exclude(type__in=[AttributeType.FLOAT_SERIES, AttributeType.FILE_SERIES])
            .order_by("path")[:limit]
        ]


class RunEditView(ProjectScopedMixin, View):
    """Edit a run's name, description and tags from its page (HTMX); answers with the header fragment."""

    def post(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        form = RunEditForm(request.POST)
        if not form.is_valid():
            return HttpResponse(form.errors.as_text(), status=400)
        changes = {k: v for k, v in form.cleaned_data.items() if k in request.POST}
        services.update_run(request.user, run, **changes)
        if not request.htmx:
            return redirect("runs:run_detail", workspace, project, run_id)
        context = {"run": run, "project": self.get_project(), "can_write": True, **header_context(run)}
        return TemplateResponse(request, "runs/run_detail.html#header", context)


def header_context(run) -> dict:
    """Tags and the source commit (with a link to it on a known forge) for a run's header."""
    rows = {}
    tags = []
    for path, string_value, json_value in Attribute.objects.filter(
        run=run, path__in=["sys/tags", "sys/failure", "source_code/git/commit", "source_code/git/remote_url"]
    ).values_list("path", "string_value", "json_value"):
        rows[path] = string_value
        if path == "sys/tags":
            tags = json_value or []
    commit = rows.get("source_code/git/commit")
    failed = run.state == RunState.FAILED
    return {
        "tags": tags,
        "duration": table.format_duration(run.running_time),
        "commit": commit,
        "commit_url": commit_url(rows.get("source_code/git/remote_url"), commit),
        "failure": rows.get("sys/failure") if failed else None,
        "stderr_tail": stderr_tail(run) if failed else None,
    }


def stderr_tail(run) -> dict | None:
    """The last lines the run wrote to stderr (the client's ``monitoring/stderr``, or another
    namespace's ``…/stderr``): the path and its last FAILURE_STDERR_LINES lines, oldest first."""
    series = (
        Attribute.objects.filter(run=run, type=AttributeType.STRING_SERIES, path__endswith="/stderr")
        .order_by(Case(When(path="monitoring/stderr", then=0), default=1), "path")
        .first()
    )
    if series is None:
        return None
    lines = [
        value for _, value in series_store.read_last_points(series.pk, series_store.STRING_TABLE, FAILURE_STDERR_LINES)
    ]
    text = "\n".join(line.rstrip("\n") for line in lines)
    return {"path": series.path, "text": text, "count": series.count, "more": series.count > len(lines)}


def commit_url(remote: str | None, commit: str | None) -> str | None:
    if not remote or not commit:
        return None
    remote = remote.strip()
    match = re.match(r"^(?:https://|ssh://git@|git@)([\w.-]+)[:/](.+?)(?:\.git)?/?$", remote)
    if not match:
        return None
    host, repo = match.groups()
    if host not in ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org"):
        return None
    sep = "commits" if host == "bitbucket.org" else "commit"
    return f"https://{host}/{repo}/{sep}/{commit}"


def _clean(values):
    return [None if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else v for v in values]


def _time_span(run) -> dict:
    """A run's start and its end so far (finished, else last ping), epoch seconds: the shared time axis."""
    end = run.finished_at or (timezone.now() if run.state == RunState.RUNNING else run.ping_at)
    return {"start": run.created_at.timestamp(), "end": end.timestamp() if end else None}


class ChartDataView(ProjectScopedMixin, View):
    """Downsampled float series of one or more runs for a chart: min/max envelope, mean, last per bucket.

    ``runs`` = comma-separated human ids; ``buckets`` ≈ the chart's pixel width;
    ``from_step``/``to_step`` zoom; ``x=time`` adds each bucket's wall-clock time (its last point's
    timestamp, epoch seconds), ``x=relative`` the seconds since the run's start (``sys/creation_time``,
    one zero for all its series); both add each run's ``start``/``end`` (epoch seconds), so every
    chart of a page, training and monitoring alike, can share one time axis. Buckets are cut
    by step (steps grow with time as a run logs), so a time axis costs no extra roll-up and stays
    bounded by ``buckets``.
    """

    def get(self, request, workspace, project):
        path = request.GET.get("path", "")
        runs = self.runs_by_ids(request.GET.get("runs", "").split(","))
        buckets = _int_param(request, "buckets", 800, 1, series_store.MAX_BUCKETS)
        from_step = _int_param(request, "from_step")
        to_step = _int_param(request, "to_step")
        x = request.GET.get("x", "step")
        with_time = x in ("time", "relative")
        envelope = request.GET.get("envelope") != "0"
        attrs = {
            a.run_id: a for a in Attribute.objects.filter(run__in=runs, path=path, type=AttributeType.FLOAT_SERIES)
        }
        # several runs (compare): every series in a fixed number of statements, on one common grid
        many = dashboard.downsample_many(list(attrs.values()), buckets, from_step, to_step) if len(attrs) > 1 else None
        stamps = {}
        if many is not None and with_time:
            stamps = dashboard.step_times_many({pk: d["last_steps"] for pk, d in many.items() if d["last_steps"]})
        out = []
        for run in runs:
            attr = attrs.get(run.pk)
            span = _time_span(run) if with_time else {}
            if attr is None:
                out.append({"id": run.human_id, "state": run.state, "steps": [], **span})
                continue
            if many is not None:
                data = many.get(attr.pk) or dashboard.EMPTY_BUCKETS
            else:
                data = series_store.downsample(attr.pk, attr.first_step, attr.last_step, buckets, from_step, to_step)
            item = {
                "id": run.human_id,
                "state": run.state,
                "count": attr.count,
                "first_step": attr.first_step,
                "last_step": attr.last_step,
                "steps": [(a + b) / 2 for a, b in zip(data["first_steps"], data["last_steps"], strict=True)],
                "avg": _clean(data["avg"]),
            }
            if any(n > 1 for n in data["counts"]):
                # buckets of several points: the hover names each one's step range and point count
                item["first_steps"], item["last_steps"] = data["first_steps"], data["last_steps"]
                item["counts"] = data["counts"]
            if envelope:
                item["min"], item["max"] = _clean(data["min"]), _clean(data["max"])
            if with_time:
                item.update(span)
                if data["last_steps"]:
                    if many is not None:
                        times = [stamps.get(attr.pk, {}).get(step) for step in data["last_steps"]]
                    else:
                        times = series_store.step_times(attr.pk, data["last_steps"])
                    if x == "relative":
                        times = [None if t is None else t - span["start"] for t in times]
                    item["times"] = times
            out.append(item)
        return JsonResponse({"path": path, "runs": out})


class RunLogView(ProjectScopedMixin, View):
    """A string series as a log: its tail, or the lines that contain ``q``."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        attr = Attribute.objects.filter(
            run=run, path=request.GET.get("path", ""), type=AttributeType.STRING_SERIES
        ).first()
        if attr is None:
            raise Http404("no such string series")
        query = request.GET.get("q", "")
        lines = series_store.read_last_points(attr.pk, series_store.STRING_TABLE, LOG_LINES, contains=query)
        context = {
            "run": run,
            "project": self.get_project(),
            "attr": attr,
            "lines": lines,
            "log_q": query,
            "truncated": attr.count > len(lines) and not query,
        }
        return TemplateResponse(request, "runs/run_detail.html#log", context)
