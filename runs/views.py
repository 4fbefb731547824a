import csv
import functools
import io
import json
import math
import mimetypes
import re
from urllib.parse import quote_plus, urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.generic import DetailView
from django_htmx.http import HttpResponseClientRedirect
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied

from projects import permissions
from projects.models import Project
from tracker.params import INT64_MAX, int_param, parse_run_number
from tracker.ui import ScopedUIViewMixin, template_for

from . import series as series_store
from . import services, table
from .attributes import attribute_value, sys_fields
from .downloads import ranged_response
from .forms import BulkActionForm, RunEditForm, SavedViewForm
from .lineage import run_lineage
from .models import Attribute, AttributeType, FileEntry, Run, SavedView, StringPoint
from .paths import safe_file_name
from .query import QueryError, QuerySyntaxError, QueryTimeout, RunQuery, query_budget
from .query.budget import retry_after_seconds
from .storage import open_blob

COMPARE_MAX_RUNS = 50
MAX_PAGE = 10**9  # beyond any table; keeps page * size inside 64 bits
LIVE_MAX_ROWS = 100  # running rows one poll of the run table refreshes (those on screen first)
GROUPS_SHOWN = 25
GROUP_ROWS = 20
CHARTS_PER_PAGE = 24
FIELDS_PER_NAMESPACE = 200
PREVIEW_TEXT_BYTES = 512 * 1024
CSV_PREVIEW_ROWS = 50
LOG_LINES = 500
RUN_COLORS = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
]
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml", "image/bmp"}
CODE_EXTENSIONS = {
    ".py", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".sh", ".txt", ".md", ".js", ".ts", ".c", ".h", ".cpp",
    ".rs", ".go", ".java", ".sql", ".r", ".jl", ".log", ".xml", ".css", ".rst", ".diff", ".patch",
}


def _writes(user, action, obj):
    """Run a domain write; turn the service layer's permission error into the UI's 403."""
    try:
        return action()
    except ApiPermissionDenied as exc:
        raise PermissionDenied(str(exc.detail))


class ProjectScopedMixin(ScopedUIViewMixin):
    def get_project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_object_or_404(
                Project.objects.for_user(self.request.user, "view").select_related("workspace"),
                workspace__slug=self.kwargs["workspace"],
                slug=self.kwargs["project"],
            )
        return self._project

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view").filter(project=self.get_project()).select_related("owner")

    def get_run(self, run_id: str) -> Run:
        project = self.get_project()
        number = parse_run_number(run_id, project.key)
        if number is None:
            raise Http404("no such run")
        run = get_object_or_404(self.get_queryset(), number=number)
        run.project = project
        return run

    def runs_by_ids(self, ids: list[str], limit: int = COMPARE_MAX_RUNS, param: str = "runs") -> list[Run]:
        """Visible runs of this project by human id (``VIS-3``), in the given order, at most ``limit``;
        ids of other projects are skipped, a run number beyond 64 bits is a 400 naming ``param``."""
        project = self.get_project()
        numbers = []
        for ref in ids:
            number = parse_run_number(ref, project.key, param)
            if number is not None and number not in numbers:
                numbers.append(number)
        numbers = numbers[:limit]
        found = {r.number: r for r in self.get_queryset().filter(number__in=numbers)}
        runs = [found[n] for n in numbers if n in found]
        for run in runs:
            run.project = project
        return runs


_quote = functools.lru_cache(maxsize=4096)(quote_plus)


def _page_number(raw, name="page") -> int:
    return int_param({name: raw}, name, 1, minimum=1, maximum=MAX_PAGE)


def group_more_url(state, key: list, shown: int, total: int) -> str:
    """The URL of a group's next runs: the table's state plus the group key and how many are shown."""
    return state.url() + "&" + urlencode({"fragment": "group", "gk": json.dumps(key), "goff": shown, "gn": total})


class TableState:
    """What the run table shows, read from the URL (so a link reproduces the view)."""

    def __init__(self, params, saved: SavedView | None = None):
        if saved is not None and "c" not in params:
            paths = [c["path"] for c in saved.columns if isinstance(c, dict) and c.get("path")]
            self.widths = {c["path"]: int(c["width"]) for c in saved.columns if isinstance(c, dict) and c.get("width")}
            self.sort_param = params.get("sort", saved.sort)
            self.query = params.get("q", saved.query)
            self.group_by = params.get("group", saved.group_by)
        else:
            paths = params.getlist("c")
            self.widths = {}
            self.sort_param = params.get("sort", "")
            self.query = params.get("q", "")
            self.group_by = params.get("group", "")
        self.paths = table.parse_columns(paths)
        self.sort_path, self.descending = table.parse_sort(self.sort_param)
        try:
            self.per_page = int(params.get("per", 50))
        except ValueError:
            self.per_page = 50
        if self.per_page not in table.PAGE_SIZES:
            self.per_page = 50
        self.page = params.get("page", "1")
        # the page an infinite scroll started on, so the pager can say "pages 2-4"
        self.first_page = params.get("first", "")

    def params(self, **override) -> list[tuple[str, str]]:
        values = {"c": self.paths, "sort": self.sort_param, "q": self.query, "group": self.group_by, "per": str(self.per_page)}
        values.update(override)
        out = []
        for key, value in values.items():
            if key == "c":
                out += [("c", p) for p in value]
            elif value and not (key == "per" and value == "50"):
                out.append((key, value))
        return out

    def url(self, **override) -> str:
        return "?" + "&".join(f"{key}={_quote(value)}" for key, value in self.params(**override))


class RunListView(ProjectScopedMixin, View):
    """The project's run table; POST applies a bulk action to the selected runs."""

    template_name = "runs/run_list.html"

    def saved_views(self):
        return SavedView.objects.filter(project=self.get_project()).filter(Q(owner=self.request.user) | Q(shared=True)).select_related("owner")

    def state(self, params) -> TableState:
        saved = None
        view_id = params.get("view")
        if view_id and view_id.isdigit():
            saved = self.saved_views().filter(pk=int(view_id)).first()
        self.saved = saved
        return TableState(params, saved)

    def run_query(self, state: TableState):
        """The query engine for this table state; a bad filter, sort or column becomes an inline error."""
        project = self.get_project()
        sort = [state.sort_param or "-sys/creation_time"]
        group_by = [state.group_by] if state.group_by else []
        aggregates = []
        try:
            rq = RunQuery(self.request.user, project, query=state.query, sort=sort, columns=state.paths, group_by=group_by)
            numeric = [c["path"] for c in rq.column_types() if c["path"] not in table.SYS_COLUMNS and c["type"] and set(c["type"].split("/")) <= {"int", "float", "float_series"}]
            aggregates = numeric[:4]
            if group_by and aggregates:
                rq.aggregates = aggregates
            return rq, None
        except (QueryError, QuerySyntaxError) as exc:
            error = {"message": exc.message, "position": exc.position, "expected": getattr(exc, "expected", None)}
            if exc.position is not None and state.query:
                error["marked"] = state.query + "\n" + " " * min(exc.position, len(state.query)) + "^"
        except ApiPermissionDenied:
            raise Http404("no such project")
        try:
            # the filter (or a column/sort spec) was bad: show the error over the unfiltered table
            return RunQuery(self.request.user, project, query="", sort=sort, columns=state.paths), error
        except (QueryError, QuerySyntaxError):
            state.paths = list(table.DEFAULT_COLUMNS)
            return RunQuery(self.request.user, project, query="", columns=state.paths), error

    def table_context(self, state: TableState) -> dict:
        """The table's context within RUNSTORE_QUERY_TIMEOUT_MS. A query the database cannot run (one
        SQLite cannot compile, one past the budget) shows its error beside the unfiltered table, as a
        query that does not parse does: a saved view holding one opens for everyone instead of failing."""
        rq, query_error = self.run_query(state)
        try:
            with query_budget():
                return self.table_page(state, rq, query_error)
        except (QueryError, QueryTimeout) as exc:
            if query_error:
                raise  # the unfiltered table itself failed
            query_error = {"message": exc.message, "position": None, "expected": None}
        rq = RunQuery(self.request.user, self.get_project(), query="", columns=state.paths)
        with query_budget():
            return self.table_page(state, rq, query_error)

    def table_page(self, state: TableState, rq, query_error) -> dict:
        project = self.get_project()
        columns = table.build_columns(rq.column_types(), state.widths)
        groups = None
        total = None
        page_number = _page_number(state.page)
        first_page = min(page_number, _page_number(state.first_page or state.page, "first"))
        has_next = False
        if state.group_by and not query_error:
            groups = self.group_rows(rq, columns, project, state)
            total = sum(g["count"] for g in groups)
            rows = []
        else:
            # no COUNT on the page's critical path: one extra row says whether a next page exists,
            # and the total arrives in its own request (the "count" fragment)
            offset = (page_number - 1) * state.per_page
            runs = list(rq.ordered().select_related("owner")[offset : offset + state.per_page + 1])
            has_next = len(runs) > state.per_page
            rows = table.build_rows(runs[: state.per_page], columns, project)
        for column in columns:
            current = column.path == state.sort_path
            column.sorted = ("desc" if state.descending else "asc") if current else ""
            if current:
                next_sort = column.path if state.descending else "-" + column.path
            else:
                first_desc = column.numeric or column.path.endswith("_time")
                next_sort = "-" + column.path if first_desc else column.path
            column.sort_url = state.url(sort=next_sort)
            others = [p for p in state.paths if p != column.path]
            column.remove_url = state.url(c=others or table.DEFAULT_COLUMNS)
            index = state.paths.index(column.path)
            if index > 0:
                moved = list(state.paths)
                moved[index - 1], moved[index] = moved[index], moved[index - 1]
                column.left_url = state.url(c=moved)
            if index < len(state.paths) - 1:
                moved = list(state.paths)
                moved[index + 1], moved[index] = moved[index], moved[index + 1]
                column.right_url = state.url(c=moved)
        all_rows = rows + [r for g in groups or [] for r in g["rows"]]
        running = [r["run"].human_id for r in all_rows if r["running"]]
        next_url = state.url(page=str(page_number + 1)) if has_next else ""
        return {
            "project": project,
            "state": state,
            "columns": columns,
            "rows": rows,
            "groups": groups,
            "page_number": page_number,
            "first_page": first_page,
            "total": total,
            "count_query": urlencode([*state.params(), ("fragment", "count")]),
            "query_error": query_error,
            "warnings": rq.warnings,
            "running_ids": running,
            "page_urls": {
                "prev": state.url(page=str(first_page - 1)) if first_page > 1 else "",
                "next": next_url,
            },
            # infinite scroll: the row after the last one loads the next page when it scrolls into view
            "more_rows_url": f"{next_url}&first={first_page}&fragment=rows" if next_url else "",
            "per_page_urls": [(n, state.url(per=str(n))) for n in table.PAGE_SIZES],
            "suggest_url": reverse("run-suggest") + "?" + urlencode({"project": f"{project.workspace.slug}/{project.slug}"}),
            "can_write": permissions.can(self.request.user, "write", project),
        }

    def group_rows(self, rq, columns, project, state, max_groups=GROUPS_SHOWN, per_group=GROUP_ROWS):
        """Groups with counts and aggregates; the first runs of each, cells read in one query for all groups."""
        groups = rq.groups(limit=max_groups)
        chosen = []
        for group in groups:
            rq.group = group["key"]
            chosen.append(list(rq.ordered().select_related("owner")[:per_group]))
        rq.group = None
        rows = table.build_rows([r for runs in chosen for r in runs], columns, project)
        out, start = [], 0
        for group, runs in zip(groups, chosen, strict=True):
            value = group["key"][0]
            aggs = [
                f"{path} avg {table.fmt_number(a['avg'])} (min {table.fmt_number(a['min'])}, max {table.fmt_number(a['max'])})"
                for path, a in group["aggregates"].items() if a["avg"] is not None
            ]
            out.append({
                "value": value, "count": group["count"], "aggregates": aggs, "rows": rows[start : start + len(runs)],
                "more": group["count"] - len(runs),
                "more_url": group_more_url(state, group["key"], len(runs), group["count"]) if group["count"] > len(runs) else "",
            })
            start += len(runs)
        return out

    def group_page(self, request, state: TableState):
        """The next runs of one group (``gk`` = its key as JSON, ``goff`` = how many are shown), in the table's order."""
        project = self.get_project()
        if not state.group_by:
            return HttpResponse("group rows need a group-by field", status=400)
        try:
            key = json.loads(request.GET.get("gk", ""))
        except ValueError:
            key = None
        if not isinstance(key, list) or len(key) != 1 or not all(v is None or isinstance(v, (str, int, float, bool)) for v in key):
            return HttpResponse("gk must be the group's key: a JSON list of one value", status=400)
        offset = _int_param(request, "goff", 0, 0)
        total = _int_param(request, "gn", 0, 0)
        rq, query_error = self.run_query(state)
        if query_error:
            return HttpResponse(query_error["message"], status=400)
        columns = table.build_columns(rq.column_types(), state.widths)
        try:
            rq.group = key
            runs = list(rq.ordered().select_related("owner")[offset : offset + state.per_page + 1])
        except QueryError as exc:
            return HttpResponse(exc.message, status=400)
        has_more = len(runs) > state.per_page
        shown = offset + min(len(runs), state.per_page)
        group = {
            "count": max(total, shown),
            "more": max(total - shown, 0),
            "more_url": group_more_url(state, key, shown, total) if has_more else "",
        }
        rows = table.build_rows(runs[: state.per_page], columns, project)
        context = {"rows": rows, "group": group, "columns": columns, "project": project, "state": state}
        return TemplateResponse(request, "runs/run_list.html#group-rows", context)

    def get(self, request, workspace, project):
        state = self.state(request.GET)
        fragment = request.GET.get("fragment")
        if request.GET.get("live"):
            return self.live_rows(request, state)
        try:
            if fragment == "count":
                return self.count_fragment(request, state)
            if fragment == "group":
                with query_budget():
                    return self.group_page(request, state)
            context = self.table_context(state)
        except QueryTimeout as exc:
            response = HttpResponse(exc.message, status=503, content_type="text/plain")
            response["Retry-After"] = str(retry_after_seconds())
            return response
        if fragment == "rows" and not context["groups"]:
            # the next page's rows for the infinite scroll, with the pager updated out of band
            return TemplateResponse(request, f"{self.template_name}#page-rows", context)
        context["saved_views"] = self.saved_views()
        context["current_view"] = self.saved
        context["view_form"] = SavedViewForm(initial={"name": self.saved.name if self.saved else ""})
        return TemplateResponse(request, template_for(request, self.template_name, "table"), context)

    def count_fragment(self, request, state: TableState):
        rq, query_error = self.run_query(state)
        try:
            with query_budget():
                total = rq.count() if not query_error else None
        except (QueryError, QueryTimeout) as exc:
            query_error = {"message": exc.message, "position": None, "expected": None}
        if query_error:
            with query_budget():
                total = RunQuery(request.user, self.get_project(), columns=["sys/id"]).count()
        return TemplateResponse(request, f"{self.template_name}#count", {"total": total, "state": state, "query_error": query_error})

    def live_rows(self, request, state: TableState):
        """Fresh rows of the given (running) runs, swapped in out of band by the table's poller."""
        project = self.get_project()
        ids = [i for i in request.GET.get("live", "").split(",") if i][:LIVE_MAX_ROWS]
        runs = self.runs_by_ids(ids, limit=LIVE_MAX_ROWS, param="live")
        rq, _ = self.run_query(state)
        columns = table.build_columns(rq.column_types(), state.widths)
        rows = table.build_rows(runs, columns, project)
        selected = set(request.GET.getlist("runs"))
        for row in rows:
            row["html"] = table.row_html(row, oob=True, selected=row["run"].human_id in selected)
        still_running = [r["run"].human_id for r in rows if r["running"]]
        context = {"rows": rows, "columns": columns, "project": project, "running_ids": still_running, "state": state}
        return TemplateResponse(request, "runs/run_list.html#live", context)

    def post(self, request, workspace, project):
        form = BulkActionForm(request.POST)
        if not form.is_valid():
            return HttpResponse(form.errors.as_text(), status=400)
        runs = self.runs_by_ids(form.cleaned_data["runs"])
        action = form.cleaned_data["action"]
        user = request.user
        project_obj = self.get_project()
        if action in ("delete", "restore", "tag", "untag"):
            _writes(user, lambda: permissions.require(user, "write", project_obj), project_obj)
        undo = []
        if action == "delete":
            for run in runs:
                _writes(user, lambda run=run: services.delete_run(user, run), run)
            undo = [r.human_id for r in runs]
            message = f"Moved {len(runs)} run(s) to the trash."
        elif action == "restore":
            deleted = Run.objects.filter(project=project_obj, deleted_at__isnull=False)
            numbers = [int(i.rpartition("-")[2]) for i in form.cleaned_data["runs"] if i.rpartition("-")[2].isdigit()]
            restored = list(deleted.filter(number__in=numbers))
            for run in restored:
                _writes(user, lambda run=run: services.restore_run(user, run), run)
            message = f"Restored {len(restored)} run(s)."
        else:
            tag = form.cleaned_data["tag"]
            if not tag:
                return HttpResponse("a tag is required", status=400)
            tag_rows = {a.run_id: a.json_value for a in Attribute.objects.filter(run__in=runs, path="sys/tags")}
            for run in runs:
                tags = set(tag_rows.get(run.pk) or [])
                tags = tags | {tag} if action == "tag" else tags - {tag}
                _writes(user, lambda run=run, tags=tags: services.update_run(user, run, tags=sorted(tags)), run)
            message = f"{'Tagged' if action == 'tag' else 'Untagged'} {len(runs)} run(s) “{tag}”."
        if not request.htmx:
            messages.success(request, message)
            return redirect(request.get_full_path())
        state = self.state(request.GET)
        context = self.table_context(state)
        context.update(message=message, undo_ids=undo)
        return TemplateResponse(request, f"{self.template_name}#table", context)


class TrashView(ProjectScopedMixin, View):
    def get(self, request, workspace, project):
        project_obj = self.get_project()
        deleted = (
            scoped_deleted(request.user, project_obj).select_related("owner").order_by("-deleted_at")[:200]
        )
        for run in deleted:
            run.project = project_obj
        return TemplateResponse(request, "runs/trash.html", {"project": project_obj, "runs": deleted})


def scoped_deleted(user, project):
    """Soft-deleted runs of a project the user may view (the trash)."""
    return permissions.scope_by_project(Run.objects.filter(project=project, deleted_at__isnull=False), user, "view")


class ColumnChooserView(ProjectScopedMixin, View):
    """Attribute paths of the project, grouped by namespace, each a link that adds it as a column."""

    def get(self, request, workspace, project):
        state = TableState(request.GET)
        query = request.GET.get("path_q", "").strip()
        paths = table.sample_paths(self.get_project(), query)
        groups = [
            (ns, [(p, state.url(c=state.paths + [p]), p in state.paths) for p in items])
            for ns, items in table.group_by_namespace(paths)
        ]
        return TemplateResponse(request, "runs/run_list.html#column-chooser", {"groups": groups, "path_q": query})


class SavedViewView(ProjectScopedMixin, View):
    """Save the current table as a named view (POST), or delete one of yours (POST with delete)."""

    def post(self, request, workspace, project):
        project_obj = self.get_project()
        if request.POST.get("delete"):
            view_id = int_param(request.POST, "delete", minimum=1)
            view = get_object_or_404(SavedView.objects.filter(project=project_obj).filter(Q(owner=request.user) | Q(shared=True)), pk=view_id)
            _writes(request.user, lambda: services.delete_view(request.user, view), view)
            target = reverse("runs:run_list", args=[workspace, project])
        else:
            form = SavedViewForm(request.POST)
            if not form.is_valid():
                return HttpResponse(form.errors.as_text(), status=400)
            data = form.cleaned_data
            widths = data["widths"]
            columns = [{"path": p, "width": widths.get(p)} for p in table.parse_columns(data["c"])]
            view = _writes(request.user, lambda: services.save_view(
                request.user, project_obj, name=data["name"], shared=data["shared"], columns=columns,
                query=data["q"], sort=data["sort"], group_by=data["group"],
            ), project_obj)
            target = reverse("runs:run_list", args=[workspace, project]) + f"?view={view.pk}"
        if request.htmx:
            return HttpResponseClientRedirect(target)
        return redirect(target)


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
        context.update(project=self.get_project(), query=query, can_write=permissions.can(self.request.user, "write", run.project))
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
        context["has_lineage"] = bool(types.get(AttributeType.FILE) or types.get(AttributeType.FILE_SET)) or any(
            p.endswith("/hash") for p in types.get(AttributeType.STRING, [])
        )
        monitoring_count = sum(1 for p in float_paths if p.startswith("monitoring/"))
        context.update(
            float_series_count=len(float_paths) - monitoring_count,
            monitoring_count=monitoring_count,
            string_series=types.get(AttributeType.STRING_SERIES, [])[:50],
            image_series=types.get(AttributeType.FILE_SERIES, [])[:20],
            file_fields=self.file_fields(run, types.get(AttributeType.FILE, []) + types.get(AttributeType.FILE_SET, [])),
            source=self.prefixed_values(run, "source_code/"),
            environment=self.prefixed_values(run, "environment/", limit=40),
        )
        context.update(self.chart_page(run))
        # the first charts' data is requested from <head>, before the page's CSS and scripts load
        first = [path for path, _ in context["chart_paths"][:4]]
        context["prefetch_paths_json"] = json.dumps(first) if first else ""
        return context

    def chart_page(self, run):
        page = int_param(self.request.GET, "chart_page", 1, minimum=1, maximum=MAX_PAGE)
        monitoring = self.request.GET.get("group") == "monitoring"
        attrs = Attribute.objects.filter(run=run, type=AttributeType.FLOAT_SERIES)
        attrs = attrs.filter(path__startswith="monitoring/") if monitoring else attrs.exclude(path__startswith="monitoring/")
        start = (page - 1) * CHARTS_PER_PAGE
        rows = list(attrs.order_by("path").values_list("path", "count")[start : start + CHARTS_PER_PAGE + 1])
        return {
            "chart_paths": rows[:CHARTS_PER_PAGE],
            "next_chart_page": page + 1 if len(rows) > CHARTS_PER_PAGE else None,
            "chart_group": "monitoring" if monitoring else "",
        }

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

    def file_fields(self, run, paths):
        paths = paths[:50]
        entries = FileEntry.objects.filter(attribute__run=run, attribute__path__in=paths).select_related("attribute").order_by("attribute__path", "relpath")[:200]
        out = []
        for entry in entries:
            out.append({"path": entry.attribute.path, "relpath": entry.relpath, "name": entry.name or entry.relpath or entry.attribute.path, "size": entry.size, "mime_type": entry.mime_type})
        return out

    def prefixed_values(self, run, prefix, limit=20):
        return [
            {"path": a.path, "type": a.type, "value": attribute_value(a)}
            for a in Attribute.objects.filter(run=run, path__startswith=prefix).exclude(type__in=[AttributeType.FLOAT_SERIES, AttributeType.FILE_SERIES]).order_by("path")[:limit]
        ]


class RunEditView(ProjectScopedMixin, View):
    """Edit a run's name, description and tags from its page (HTMX); answers with the header fragment."""

    def post(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        form = RunEditForm(request.POST)
        if not form.is_valid():
            return HttpResponse(form.errors.as_text(), status=400)
        changes = {k: v for k, v in form.cleaned_data.items() if k in request.POST}
        _writes(request.user, lambda: services.update_run(request.user, run, **changes), run)
        if not request.htmx:
            return redirect("runs:run_detail", workspace, project, run_id)
        context = {"run": run, "project": self.get_project(), "can_write": True, **header_context(run)}
        return TemplateResponse(request, "runs/run_detail.html#header", context)


def header_context(run) -> dict:
    """Tags and the source commit (with a link to it on a known forge) for a run's header."""
    rows = {}
    tags = []
    for path, string_value, json_value in Attribute.objects.filter(
        run=run, path__in=["sys/tags", "source_code/git/commit", "source_code/git/remote_url"]
    ).values_list("path", "string_value", "json_value"):
        rows[path] = string_value
        if path == "sys/tags":
            tags = json_value or []
    commit = rows.get("source_code/git/commit")
    return {"tags": tags, "duration": table.format_duration(run.running_time), "commit": commit, "commit_url": commit_url(rows.get("source_code/git/remote_url"), commit)}


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


def _int_param(request, name, default=None, lo=None, hi=None):
    """An integer parameter (400 when malformed or beyond 64 bits), clamped to ``[lo, hi]``."""
    value = int_param(request.GET, name, default, minimum=-INT64_MAX)
    if value is None:
        return value
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return value


class ChartDataView(ProjectScopedMixin, View):
    """Downsampled float series of one or more runs for a chart: min/max envelope, mean, last per bucket.

    ``runs`` = comma-separated human ids; ``buckets`` ≈ the chart's pixel width;
    ``from_step``/``to_step`` zoom; ``x=time`` adds each bucket's wall-clock time.
    """

    def get(self, request, workspace, project):
        path = request.GET.get("path", "")
        runs = self.runs_by_ids(request.GET.get("runs", "").split(","))
        buckets = _int_param(request, "buckets", 800, 1, series_store.MAX_BUCKETS)
        from_step = _int_param(request, "from_step")
        to_step = _int_param(request, "to_step")
        with_time = request.GET.get("x") == "time"
        envelope = request.GET.get("envelope") != "0"
        attrs = {a.run_id: a for a in Attribute.objects.filter(run__in=runs, path=path, type=AttributeType.FLOAT_SERIES)}
        out = []
        for run in runs:
            attr = attrs.get(run.pk)
            if attr is None:
                out.append({"id": run.human_id, "state": run.state, "steps": []})
                continue
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
            if envelope:
                item["min"], item["max"] = _clean(data["min"]), _clean(data["max"])
            if with_time and data["last_steps"]:
                item["times"] = _step_times(attr.pk, data["last_steps"])
            out.append(item)
        return JsonResponse({"path": path, "runs": out})


def _step_times(series_id: int, steps: list[int]) -> list[float | None]:
    from django.db import connection

    found: dict[int, float] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(steps), 900):
            chunk = steps[start : start + 900]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT step, timestamp FROM {series_store.FLOAT_TABLE} WHERE series_id = %s AND step IN ({marks})",
                [series_id, *chunk],
            )
            found.update(cursor.fetchall())
    return [found.get(s) for s in steps]


class RunLogView(ProjectScopedMixin, View):
    """A string series as a log: its tail, or the lines that contain ``q``."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        attr = Attribute.objects.filter(run=run, path=request.GET.get("path", ""), type=AttributeType.STRING_SERIES).first()
        if attr is None:
            raise Http404("no such string series")
        points = StringPoint.objects.filter(series=attr)
        query = request.GET.get("q", "")
        if query:
            points = points.filter(value__icontains=query)
        lines = list(points.order_by("-step").values_list("step", "value")[:LOG_LINES])[::-1]
        context = {"run": run, "project": self.get_project(), "attr": attr, "lines": lines, "log_q": query, "truncated": attr.count > len(lines) and not query}
        return TemplateResponse(request, "runs/run_detail.html#log", context)


class RunGalleryView(ProjectScopedMixin, View):
    """An image series as a gallery: a step slider over its images."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        attr = get_object_or_404(Attribute, run=run, path=request.GET.get("path", ""), type=AttributeType.FILE_SERIES)
        steps = list(FileEntry.objects.filter(attribute=attr).order_by("-step").values_list("step", flat=True)[:2000])[::-1]
        context = {"run": run, "project": self.get_project(), "attr": attr, "steps": steps, "steps_json": steps}
        return TemplateResponse(request, "runs/run_detail.html#gallery", context)


def _file_entry(run, request) -> FileEntry:
    attr = get_object_or_404(
        Attribute, run=run, path=request.GET.get("path", ""),
        type__in=[AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES],
    )
    entries = FileEntry.objects.filter(attribute=attr).select_related("blob")
    if attr.type == AttributeType.FILE_SET:
        entries = entries.filter(relpath=request.GET.get("relpath", ""))
    elif attr.type == AttributeType.FILE_SERIES:
        entries = entries.filter(step=_int_param(request, "step", 0))
    entry = entries.first()
    if entry is None:
        raise Http404("no such file")
    entry.attribute = attr
    return entry


def _entry_name(entry) -> str:
    return safe_file_name(entry.name or entry.relpath, fallback=entry.attribute.path.rsplit("/", 1)[-1])


# Files served inline: the sandbox makes an HTML report a unique opaque origin (its scripts cannot
# read Runstore's cookies, DOM or API), and only Runstore's own pages may frame it.
RAW_FILE_CSP = "sandbox; frame-ancestors 'self'"


@method_decorator(xframe_options_sameorigin, name="dispatch")
class RunFileRawView(ProjectScopedMixin, View):
    """A file served inline for previews (images, video, HTML reports in the run page's sandboxed
    iframe), always under ``CSP: sandbox``; framed by Runstore's pages only (``SAMEORIGIN``)."""

    def get(self, request, workspace, project, run_id):
        entry = _file_entry(self.get_run(run_id), request)
        content_type = entry.mime_type
        if content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(_entry_name(entry))[0] or content_type
        return ranged_response(
            request, open_blob(entry.blob.storage_key), size=entry.size, content_type=content_type,
            filename=_entry_name(entry), inline=True, csp=RAW_FILE_CSP,
        )


def _preview_kind(name: str, mime: str, size: int) -> str:
    lower = name.lower()
    ext = "." + lower.rsplit(".", 1)[-1] if "." in lower else ""
    if mime in IMAGE_TYPES or ext in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp"):
        return "image"
    if mime.startswith("video/") or ext in (".mp4", ".webm", ".ogv", ".mov"):
        return "video"
    if ext in (".html", ".htm") or mime == "text/html":
        return "html"
    if ext == ".ipynb":
        return "notebook"
    if ext in (".csv", ".tsv") or mime == "text/csv":
        return "csv"
    if size <= PREVIEW_TEXT_BYTES and (ext in CODE_EXTENSIONS or mime.startswith("text/") or mime in ("application/json", "application/x-yaml")):
        return "code"
    return "none"


class RunFilePreviewView(ProjectScopedMixin, View):
    """An in-page preview of one file: image, video, sandboxed HTML, CSV table or highlighted source."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        entry = _file_entry(run, request)
        name = _entry_name(entry)
        kind = _preview_kind(name, entry.mime_type, entry.size)
        query = {"path": entry.attribute.path}
        if entry.relpath:
            query["relpath"] = entry.relpath
        if entry.step is not None:
            query["step"] = entry.step
        base = reverse("runs:run_detail", args=[workspace, project, run_id])
        context = {
            "run": run, "project": self.get_project(), "entry": entry, "name": name, "kind": kind,
            "raw_url": f"{base}raw?{urlencode(query)}",
            "download_url": f"/api/v1/runs/{run.uuid}/files/download?{urlencode(query)}",
        }
        from . import processing
        from .models import BlobInfo, BlobPreview

        visible = processing.processed_for(entry.blob_id, run.project_id)  # nothing learnt from other projects' uploads
        failure = BlobInfo.objects.filter(blob_id=entry.blob_id).values_list("preview_error", flat=True).first() if visible else None
        if failure and kind in ("image", "notebook", "video"):
            # processing refused the file or could not read it (runs.processing): it is offered for download only
            context["preview_error"] = failure
        elif kind in ("notebook", "video"):
            # the notebook's HTML and the video's poster frame are made by the blob-processing task
            # (runs.processing) and served by the API (HTML sandboxed)
            preview = "html" if kind == "notebook" else "poster"
            if visible and BlobPreview.objects.filter(blob=entry.blob, kind=preview).exists():
                url = f"/api/v1/runs/{run.uuid}/files/preview?{urlencode({**query, 'kind': preview})}"
                context["notebook_url" if kind == "notebook" else "poster_url"] = url
        elif kind == "csv":
            context["csv_rows"], context["csv_more"] = _csv_rows(entry, delimiter="\t" if name.lower().endswith(".tsv") else ",")
        elif kind == "code":
            context["code_html"] = _highlight(entry, name)
        return TemplateResponse(request, "runs/run_detail.html#preview", context)


def _csv_rows(entry, delimiter=","):
    rows, more = [], False
    with open_blob(entry.blob.storage_key) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        for index, row in enumerate(csv.reader(text, delimiter=delimiter)):
            if index > CSV_PREVIEW_ROWS:
                more = True
                break
            rows.append(row[:50])
    return rows, more


def _highlight(entry, name: str):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, guess_lexer_for_filename
    from pygments.util import ClassNotFound

    with open_blob(entry.blob.storage_key) as raw:
        source = raw.read(PREVIEW_TEXT_BYTES).decode("utf-8", errors="replace")
    try:
        lexer = guess_lexer_for_filename(name, source)
    except ClassNotFound:
        lexer = TextLexer()
    from django.utils.safestring import mark_safe

    return mark_safe(highlight(source, lexer, HtmlFormatter(nowrap=False, cssclass="highlight")))  # noqa: S308 (Pygments escapes)


class CompareView(ProjectScopedMixin, View):
    """Overlaid charts, an attribute diff and parameter plots for 2-50 runs."""

    template_name = "runs/compare.html"
    fragments = ("charts", "diff", "plots")

    def get(self, request, workspace, project):
        ids = [i for part in request.GET.getlist("runs") for i in part.split(",") if i]
        runs = self.runs_by_ids(ids)
        if not runs:
            raise Http404("no runs to compare")
        fragment = request.GET.get("fragment")
        context = {"project": self.get_project(), "runs": runs, "run_ids": ",".join(r.human_id for r in runs)}
        for index, run in enumerate(runs):
            run.color = RUN_COLORS[index % len(RUN_COLORS)]
        context["colors_json"] = json.dumps({r.human_id: r.color for r in runs})
        context["legend_json"] = [{"id": r.human_id, "name": r.name, "color": r.color, "state": r.state} for r in runs]
        if fragment == "diff":
            context.update(self.diff(runs))
        elif fragment == "values":
            return self.values(runs)
        elif fragment == "plots":
            numeric = self.numeric_paths(runs)
            params = [p for p in numeric if p.startswith(("parameters/", "params/", "config/"))][:4] or numeric[:3]
            metrics = [p for p in numeric if p.startswith(("eval/", "metrics/", "val/", "test/"))] or [p for p in numeric if p not in params]
            context.update(
                numeric_paths=numeric, default_params=params, default_metric=metrics[0] if metrics else "",
                default_x=params[0] if params else "", default_y=metrics[0] if metrics else "",
            )
        else:
            context.update(self.chart_page(runs))
        name = fragment if fragment in self.fragments else None
        return TemplateResponse(request, template_for(request, self.template_name, name), context)

    def chart_page(self, runs):
        page = int_param(self.request.GET, "chart_page", 1, minimum=1, maximum=MAX_PAGE)
        query = self.request.GET.get("chart_q", "").strip()
        paths = Attribute.objects.filter(run__in=runs, type=AttributeType.FLOAT_SERIES)
        if query:
            paths = paths.filter(path__icontains=query)
        paths = paths.values_list("path", flat=True).distinct().order_by("path")
        start = (page - 1) * CHARTS_PER_PAGE
        rows = list(paths[start : start + CHARTS_PER_PAGE + 1])
        return {
            "chart_paths": rows[:CHARTS_PER_PAGE],
            "next_chart_page": page + 1 if len(rows) > CHARTS_PER_PAGE else None,
            "chart_count": paths.count() if page == 1 else None,
            "chart_q": query,
        }

    def diff(self, runs, per_page=100):
        """Every field of the runs side by side, only rows that differ by default, one page of rows."""
        params = self.request.GET
        only_diff = params.get("all") != "1"
        query = params.get("diff_q", "").strip()
        attrs = Attribute.objects.filter(run__in=runs).exclude(type__in=[AttributeType.FILE_SERIES])
        if query:
            attrs = attrs.filter(path__icontains=query)
        values: dict[str, dict[int, str]] = {}
        for attr in attrs.order_by("path").iterator(chunk_size=2000):
            text, _ = table.attribute_cell(attr)
            values.setdefault(attr.path, {})[attr.run_id] = text
        for run in runs:
            for field in sys_fields(run):
                if field["path"] in ("sys/modification_time", "sys/ping_time", "sys/project"):
                    continue
                if not query or query.lower() in field["path"].lower():
                    value = field["value"]
                    if field["path"] == "sys/running_time":
                        value = table.format_duration(value)
                    values.setdefault(field["path"], {})[run.pk] = "" if value is None else str(value)
        rows = []
        for path in sorted(values):
            cells = [values[path].get(run.pk, "") for run in runs]
            differs = len({str(c) for c in cells}) > 1
            if only_diff and not differs:
                continue
            rows.append({"path": path, "cells": cells, "differs": differs})
        paginator = Paginator(rows, per_page)
        page = paginator.get_page(params.get("diff_page", 1))
        base = {"runs": ",".join(r.human_id for r in runs), "fragment": "diff", "diff_q": query}
        if not only_diff:
            base["all"] = "1"
        return {
            "diff_rows": page.object_list,
            "diff_page": page,
            "diff_total": len(values),
            "only_diff": only_diff,
            "diff_q": query,
            "diff_toggle_url": "?" + urlencode({**base, "all": "" if not only_diff else "1"}),
            "diff_prev_url": "?" + urlencode({**base, "diff_page": page.previous_page_number()}) if page.has_previous() else "",
            "diff_next_url": "?" + urlencode({**base, "diff_page": page.next_page_number()}) if page.has_next() else "",
        }

    def numeric_paths(self, runs):
        return list(
            Attribute.objects.filter(run__in=runs, type__in=[AttributeType.INT, AttributeType.FLOAT, AttributeType.FLOAT_SERIES, AttributeType.BOOL])
            .values_list("path", flat=True).distinct().order_by("path")[:2000]
        )

    def values(self, runs):
        """Numeric values of chosen paths for the parallel-coordinates and scatter plots (JSON)."""
        paths = [p for p in self.request.GET.getlist("p") if p][:30]
        by_run: dict[int, dict[str, float | None]] = {r.pk: {} for r in runs}
        for attr in Attribute.objects.filter(run__in=runs, path__in=paths):
            value = attribute_value(attr)
            if isinstance(value, dict):
                value = value.get("last")
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
                value = None
            by_run[attr.run_id][attr.path] = value if isinstance(value, (int, float)) else None
        return JsonResponse({
            "paths": paths,
            "runs": [{"id": r.human_id, "color": r.color, "values": [by_run[r.pk].get(p) for p in paths]} for r in runs],
        })

