import functools
import json
from urllib.parse import quote_plus, urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from projects import permissions
from tracker.params import int_param
from tracker.ui import template_for

from .. import services, table
from ..forms import BulkActionForm, SavedViewForm
from ..models import Run, SavedView
from ..query import QueryError, QuerySyntaxError, QueryTimeout, RunQuery, query_budget
from ..query.budget import retry_after_seconds
from .base import MAX_PAGE, ProjectScopedMixin, _int_param

LIVE_MAX_ROWS = 100  # running rows one poll of the run table refreshes (those on screen first)
GROUPS_SHOWN = 25
GROUP_ROWS = 20


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
        values = {
            "c": self.paths,
            "sort": self.sort_param,
            "q": self.query,
            "group": self.group_by,
            "per": str(self.per_page),
        }
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
        return (
            SavedView.objects.for_user(self.request.user, "view")
            .filter(project=self.get_project())
            .select_related("owner")
        )

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
            rq = RunQuery(
                self.request.user, project, query=state.query, sort=sort, columns=state.paths, group_by=group_by
            )
            numeric = [
                c["path"]
                for c in rq.column_types()
                if c["path"] not in table.SYS_COLUMNS
                and c["type"]
                and set(c["type"].split("/")) <= {"int", "float", "float_series"}
            ]
            aggregates = numeric[:4]
            if group_by and aggregates:
                rq.aggregates = aggregates
            return rq, None
        except (QueryError, QuerySyntaxError) as exc:
            error = {"message": exc.message, "position": exc.position, "expected": getattr(exc, "expected", None)}
            if exc.position is not None and state.query:
                error["marked"] = state.query + "\n" + " " * min(exc.position, len(state.query)) + "^"
        except PermissionDenied:
            raise Http404("no such project")
        try:
            # the filter (or a column/sort spec) was bad: the error is shown over an empty table; this
            # unfiltered query only gives the table its columns
            return RunQuery(self.request.user, project, query="", sort=sort, columns=state.paths), error
        except (QueryError, QuerySyntaxError):
            state.paths = list(table.DEFAULT_COLUMNS)
            return RunQuery(self.request.user, project, query="", columns=state.paths), error

    def table_context(self, state: TableState) -> dict:
        """The table's context within RUNSTORE_QUERY_TIMEOUT_MS. A query the database cannot run (one
        SQLite cannot compile, one past the budget) shows its error over an empty table, as a query
        that does not parse does: a saved view holding one opens for everyone instead of failing,
        and no runs the filter did not select are shown as if it had."""
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
        if query_error:
            # a filter (or sort/column spec) with an error selects nothing: the table is empty under the
            # error, never the unfiltered runs with their count, which would read as the filter's result
            rows: list = []
            total = 0
        elif state.group_by:
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
            if column.series:
                # the header switches the series column between its last, min, max and average value
                column.aggregate_urls = [
                    (
                        aggregate,
                        state.url(
                            c=[
                                table.aggregate_spec(column.series, aggregate) if p == column.path else p
                                for p in state.paths
                            ]
                        ),
                        aggregate == column.aggregate,
                    )
                    for aggregate in table.SERIES_AGGREGATES
                ]
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
            "suggest_url": reverse("run-suggest")
            + "?"
            + urlencode({"project": f"{project.workspace.slug}/{project.slug}"}),
            "can_write": "write" in self.actions(),
            "can_delete": "delete" in self.actions(),
            "can_export": "export" in self.actions(),
            "export_url": reverse("runs:run_export", args=[project.workspace.slug, project.slug]) + state.url(),
        }

    def actions(self) -> frozenset[str]:
        """What the user may do in this project, asked once (one query) for every control of the page."""
        if not hasattr(self, "_actions"):
            self._actions = permissions.project_actions(self.request.user, self.get_project().pk)
        return self._actions

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
                for path, a in group["aggregates"].items()
                if a["avg"] is not None
            ]
            out.append(
                {
                    "value": value,
                    "count": group["count"],
                    "aggregates": aggs,
                    "rows": rows[start : start + len(runs)],
                    "more": group["count"] - len(runs),
                    "more_url": group_more_url(state, group["key"], len(runs), group["count"])
                    if group["count"] > len(runs)
                    else "",
                }
            )
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
        if (
            not isinstance(key, list)
            or len(key) != 1
            or not all(v is None or isinstance(v, (str, int, float, bool)) for v in key)
        ):
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
        from .dashboard import open_dashboard_redirect

        if to_dashboard := open_dashboard_redirect(self, request, workspace, project):
            return to_dashboard
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
        context["can_manage"] = "manage" in self.actions()
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
            total = 0  # nothing is shown under a filter with an error
        return TemplateResponse(
            request, f"{self.template_name}#count", {"total": total, "state": state, "query_error": query_error}
        )

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
        # trash and restore need the delete action, tagging the write action
        permissions.require(user, "delete" if action in ("delete", "restore") else "write", project_obj)
        undo = []
        if action == "delete":
            for run in runs:
                services.delete_run(user, run)
            undo = [r.human_id for r in runs]
            message = f"Moved {len(runs)} run(s) to the trash."
        elif action == "restore":
            trashed = Run.objects.for_user(user, "view", trashed=True).filter(project=project_obj)
            ids = form.cleaned_data["runs"]
            restored = self.runs_by_ids(ids, limit=len(ids), queryset=trashed)
            for run in restored:
                services.restore_run(user, run)
            message = f"Restored {len(restored)} run(s)."
        else:
            tag = form.cleaned_data["tag"]
            if not tag:
                return HttpResponse("a tag is required", status=400)
            add, remove = ([tag], []) if action == "tag" else ([], [tag])
            services.tag_runs(user, project_obj, runs, add=add, remove=remove)
            message = f"{'Tagged' if action == 'tag' else 'Untagged'} {len(runs)} run(s) “{tag}”."
        if not request.htmx:
            messages.success(request, message)
            return redirect(request.get_full_path())
        state = self.state(request.GET)
        context = self.table_context(state)
        context.update(message=message, undo_ids=undo)
        return TemplateResponse(request, f"{self.template_name}#table", context)


class TrashView(ProjectScopedMixin, View):
    """The project's runs in the trash, newest deletion first."""

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view", trashed=True).filter(project=self.get_project())

    def get(self, request, workspace, project):
        project_obj = self.get_project()
        deleted = self.get_queryset().select_related("owner").order_by("-deleted_at")[:200]
        for run in deleted:
            run.project = project_obj
        context = {
            "project": project_obj,
            "runs": deleted,
            "can_delete": permissions.can(request.user, "delete", project_obj),
        }
        return TemplateResponse(request, "runs/trash.html", context)


class ColumnChooserView(ProjectScopedMixin, View):
    """Attribute paths of the project, grouped by namespace, each a link that adds it as a column."""

    def get(self, request, workspace, project):
        state = TableState(request.GET)
        query = request.GET.get("path_q", "").strip()
        types = table.sample_path_types(self.get_project(), query)
        groups = [
            (
                ns,
                [
                    (p, state.url(c=state.paths + [p]), p in state.paths, self.aggregates(state, p, types[p]))
                    for p in items
                ],
            )
            for ns, items in table.group_by_namespace(sorted(types))
        ]
        return TemplateResponse(request, "runs/run_list.html#column-chooser", {"groups": groups, "path_q": query})

    @staticmethod
    def aggregates(state: TableState, path: str, type_: str) -> list[tuple[str, str, bool]]:
        """A float series' other aggregates as columns of their own: (aggregate, URL adding it, shown)."""
        if "float_series" not in type_.split("/"):
            return []
        out = []
        for aggregate in table.SERIES_AGGREGATES[1:]:
            spec = table.aggregate_spec(path, aggregate)
            out.append((aggregate, state.url(c=state.paths + [spec]), spec in state.paths))
        return out


class SavedViewView(ProjectScopedMixin, View):
    """Save the current table as a named view (POST), or delete one of yours (POST with delete)."""

    def post(self, request, workspace, project):
        project_obj = self.get_project()
        if request.POST.get("delete"):
            view_id = int_param(request.POST, "delete", minimum=1)
            view = get_object_or_404(
                SavedView.objects.for_user(request.user, "view").filter(project=project_obj), pk=view_id
            )
            services.delete_view(request.user, view)
            target = reverse("runs:run_list", args=[workspace, project])
        else:
            form = SavedViewForm(request.POST)
            if not form.is_valid():
                return HttpResponse(form.errors.as_text(), status=400)
            data = form.cleaned_data
            widths = data["widths"]
            columns = [{"path": p, "width": widths.get(p)} for p in table.parse_columns(data["c"])]
            view = services.save_view(
                request.user,
                project_obj,
                name=data["name"],
                shared=data["shared"],
                columns=columns,
                query=data["q"],
                sort=data["sort"],
                group_by=data["group"],
                dashboard=data["dashboard"],
            )
            page = (
                "runs:dashboard" if data["dashboard"] and view.dashboard.get("open") == "dashboard" else "runs:run_list"
            )
            target = reverse(page, args=[workspace, project]) + f"?view={view.pk}"
        if request.htmx:
            return HttpResponseClientRedirect(target)
        return redirect(target)
