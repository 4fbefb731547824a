"""The project dashboard: charts of chosen series over the runs the table's filter selects."""

import json
from typing import NamedTuple
from urllib.parse import urlencode

import orjson
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from tracker.params import ParameterError

from .. import dashboard
from ..attributes import attribute_value
from ..forms import SavedViewForm
from ..models import Attribute, AttributeType, ProjectField
from ..palette import RUN_COLORS
from ..query import QueryError, QueryTimeout, query_budget
from ..query.budget import retry_after_seconds
from .base import ProjectScopedMixin, _int_param
from .detail import _time_span
from .table import RunListView

DEFAULT_CHARTS = 6
MAX_PATHS_PER_REQUEST = 20  # charts one chart-data request may ask for (format=columns)
SUGGESTED_PATHS = 1000
SKIPPED_BY_DEFAULT = ("monitoring/", "sys/")
CHART_RUN_FIELDS = ("id", "project_id", "number", "state", "created_at", "finished_at", "ping_at")


class ChartSeries(NamedTuple):
    """The fields of a float series a dashboard chart reads (a tuple: a hundred runs' series are
    looked up per chart, and model instances cost more than the rest of their look-up)."""

    pk: int
    run_id: int
    path: str
    count: int | None  # type: ignore[assignment]  # the series' point count, as the model names it
    first_step: int | None
    last_step: int | None


def _json(payload) -> HttpResponse:
    """``payload`` as JSON, encoded with orjson (the chart data of 100 runs: tens of thousands of
    numbers a request); NaN and infinities, which the payload holds as None already, would be null."""
    return HttpResponse(orjson.dumps(payload), content_type="application/json")


def _group_label(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


class DashboardView(RunListView):
    """The dashboard of the table's view: its filter and sort pick the runs (the first
    ``dashboard.MAX_RUNS``), the saved view (or the address) its charts and settings."""

    template_name = "runs/dashboard.html"
    http_method_names = ["get", "head", "options"]  # the table's bulk actions (its POST) stay on the table

    def settings(self, params) -> dict:
        saved = dict(self.saved.dashboard) if self.saved is not None and self.saved.dashboard else {}
        raw = {
            # an empty chart= is a dashboard whose charts were all removed (no chart= at all: the defaults)
            "charts": [c for c in params.getlist("chart") if c] if "chart" in params else saved.get("charts"),
            "x": params.get("x", saved.get("x", "step")),
            "log": params.get("log") == "1" if "log" in params else saved.get("log", False),
            "smooth": saved.get("smooth", 0),
            "color_by": params.get("color", saved.get("color_by", "")),
            "open": saved.get("open", "table"),
        }
        if "smooth" in params:
            try:
                raw["smooth"] = float(params["smooth"])
            except ValueError:
                raw["smooth"] = params["smooth"]
        if raw["charts"] is None:
            raw["charts"] = self.default_charts()
        return dashboard.parse_dashboard(raw)

    def float_series_paths(self, limit=SUGGESTED_PATHS) -> list[str]:
        return list(
            ProjectField.objects.filter(project=self.get_project(), type=AttributeType.FLOAT_SERIES)
            .order_by("path")
            .values_list("path", flat=True)[:limit]
        )

    def default_charts(self) -> list[str]:
        paths = [p for p in self.float_series_paths(200) if not p.startswith(SKIPPED_BY_DEFAULT)]
        return paths[:DEFAULT_CHARTS]

    def colors(self, runs, color_by: str) -> tuple[dict, list]:
        """Each run's colour, and the legend: by run (the palette in table order) or by the value of
        ``color_by`` (one colour per value, in order of first appearance)."""
        if not color_by:
            return {r.human_id: RUN_COLORS[i % len(RUN_COLORS)] for i, r in enumerate(runs)}, []
        values: dict[int, object] = {}
        if color_by == "sys/state":
            values = {r.pk: r.state for r in runs}
        elif color_by == "sys/owner":
            values = {r.pk: r.owner.username if r.owner_id else None for r in runs}
        elif color_by == "sys/name":
            values = {r.pk: r.name for r in runs}
        else:
            for attr in Attribute.objects.filter(run__in=[r.pk for r in runs], path=color_by):
                values[attr.run_id] = attribute_value(attr)
        groups: dict[str, str] = {}
        counts: dict[str, int] = {}
        colors = {}
        for run in runs:
            label = _group_label(values.get(run.pk))
            if label not in groups:
                groups[label] = RUN_COLORS[len(groups) % len(RUN_COLORS)]
            counts[label] = counts.get(label, 0) + 1
            colors[run.human_id] = groups[label]
        legend = [{"label": label, "color": color, "count": counts[label]} for label, color in groups.items()]
        return colors, legend

    def get(self, request, workspace, project):
        state = self.state(request.GET)
        try:
            settings = self.settings(request.GET)
        except dashboard.DashboardError as exc:
            return HttpResponse(f"dashboard: {exc}", status=400, content_type="text/plain")
        rq, query_error = self.run_query(state)
        runs: list = []
        if not query_error:
            try:
                with query_budget():
                    runs = list(rq.ordered().select_related("owner")[: dashboard.MAX_RUNS + 1])
            except QueryTimeout as exc:
                response = HttpResponse(exc.message, status=503, content_type="text/plain")
                response["Retry-After"] = str(retry_after_seconds())
                return response
            except QueryError as exc:
                query_error = {"message": exc.message, "position": None, "expected": None}
        more = len(runs) > dashboard.MAX_RUNS
        runs = runs[: dashboard.MAX_RUNS]
        project_obj = self.get_project()
        for run in runs:
            run.project = project_obj
        colors, legend = self.colors(runs, settings["color_by"])
        for run in runs:
            run.color = colors[run.human_id]
        table_params = state.params()
        if self.saved is not None:
            table_params = [("view", str(self.saved.pk)), *table_params]
        context = {
            "project": project_obj,
            "state": state,
            "runs": runs,
            "more_runs": more,
            "max_runs": dashboard.MAX_RUNS,
            "run_ids": ",".join(r.human_id for r in runs),
            "colors_json": json.dumps(colors),
            "legend": legend,
            "settings": settings,
            "settings_json": json.dumps(settings),
            # the charts' data is asked for from <head>, before the page's CSS and scripts load
            "prefetch_paths_json": json.dumps(settings["charts"]) if runs and settings["x"] == "step" else "",
            "query_error": query_error,
            "series_paths": self.float_series_paths(),
            "table_url": reverse("runs:run_list", args=[workspace, project])
            + "?"
            + urlencode([*table_params, ("tab", "table")]),
            "table_params": state.params(),
            "saved_views": self.saved_views(),
            "current_view": self.saved,
            "view_form": SavedViewForm(initial={"name": self.saved.name if self.saved else ""}),
            "can_write": "write" in self.actions(),
        }
        return TemplateResponse(request, self.template_name, context)


def open_dashboard_redirect(view, request, workspace, project):
    """The run table's hook: a saved view that opens on its dashboard goes there, unless the
    table was asked for (``tab=table``) or this is a fragment request."""
    saved = view.saved
    if (
        saved is None
        or request.htmx
        or request.GET.get("tab") == "table"
        or request.GET.get("fragment")
        or not isinstance(saved.dashboard, dict)
        or saved.dashboard.get("open") != "dashboard"
    ):
        return None
    return redirect(reverse("runs:dashboard", args=[workspace, project]) + "?" + request.GET.urlencode())


class DashboardChartDataView(ProjectScopedMixin, View):
    """One dashboard chart's data for all its runs (``runs`` = up to ``dashboard.MAX_RUNS`` human
    ids): the response of :class:`runs.views.detail.ChartDataView`, read in a fixed number of
    statements. ``x=time`` adds each bucket's wall-clock time, ``x=relative`` the seconds since the
    run's start, both with each run's start and end (the page's shared time axis).

    With ``format=columns`` on the step axis, ``path`` may be repeated (up to
    ``MAX_PATHS_PER_REQUEST``): the answer is then ``{"format": "columns", "charts": [...]}``, one
    chart's answer per path in the order asked, so a page's charts share the project, permission and
    run look-ups of one request instead of repeating them per chart."""

    def get(self, request, workspace, project):
        paths = request.GET.getlist("path") or [""]
        x = request.GET.get("x", "step")
        columns = request.GET.get("format") == "columns" and x == "step"
        if len(paths) > 1 and not columns:
            raise ParameterError("path", "several paths need format=columns and the step axis")
        if len(paths) > MAX_PATHS_PER_REQUEST:
            raise ParameterError("path", f"at most {MAX_PATHS_PER_REQUEST} per request, got {len(paths)}")
        # only what a chart shows of a run (its id, state and time span), not whole rows with owners
        light = self.get_queryset().select_related(None).only(*CHART_RUN_FIELDS)
        runs = self.runs_by_ids(request.GET.get("runs", "").split(","), limit=dashboard.MAX_RUNS, queryset=light)
        buckets = min(_int_param(request, "buckets", 800, 1, 10_000), dashboard.bucket_cap(len(runs)))
        from_step = _int_param(request, "from_step")
        to_step = _int_param(request, "to_step")
        envelope = request.GET.get("envelope") != "0"
        by_path: dict[str, dict] = {p: {} for p in paths}
        for row in Attribute.objects.filter(run__in=runs, path__in=paths, type=AttributeType.FLOAT_SERIES).values_list(
            "id", "run_id", "path", "count", "first_step", "last_step"
        ):
            a = ChartSeries(*row)
            by_path[a.path][a.run_id] = a
        # many overlaid lines: values to 7 significant digits (more than the hover shows) halve the response
        digits = 7 if len(runs) > 10 else None
        if columns:
            # all the charts' roll-ups read together (two statements on PostgreSQL, not two per chart)
            data = dashboard.columns_charts(
                [list(by_path[path].values()) for path in paths], buckets, from_step, to_step, digits, envelope
            )
            charts = [self.columns(path, runs, by_path[path], d) for path, d in zip(paths, data, strict=True)]
            if len(paths) == 1:
                return _json(charts[0])
            # several charts in one answer: the page's charts share one request's look-ups
            return _json({"format": "columns", "charts": charts})
        path = paths[0]
        attrs = by_path[path]
        data = dashboard.downsample_many(list(attrs.values()), buckets, from_step, to_step)
        with_time = x in ("time", "relative")
        times: dict = {}
        if with_time:
            wanted = {a.pk: data[a.pk]["last_steps"] for a in attrs.values() if data.get(a.pk, {}).get("last_steps")}
            times = dashboard.step_times_many(wanted)
        out = []
        for run in runs:
            attr = attrs.get(run.pk)
            d = data.get(attr.pk) if attr else None
            span = _time_span(run) if with_time else {}
            if attr is None or d is None:
                out.append({"id": run.human_id, "state": run.state, "steps": [], **span})
                continue
            item = {
                "id": run.human_id,
                "state": run.state,
                "count": attr.count,
                "first_step": attr.first_step,
                "last_step": attr.last_step,
                "steps": [(a + b) / 2 for a, b in zip(d["first_steps"], d["last_steps"], strict=True)],
                "avg": dashboard.finite_or_none(d["avg"], digits),
            }
            if any(n > 1 for n in d["counts"]):
                item["first_steps"], item["last_steps"] = d["first_steps"], d["last_steps"]
                item["counts"] = d["counts"]
            if envelope:
                item["min"] = dashboard.finite_or_none(d["min"], digits)
                item["max"] = dashboard.finite_or_none(d["max"], digits)
            if with_time:
                item.update(span)
                if attr.pk in times:
                    found = times[attr.pk]
                    stamps = [found.get(s) for s in d["last_steps"]]
                    if x == "relative":
                        stamps = [None if t is None else t - span["start"] for t in stamps]
                    item["times"] = stamps
            out.append(item)
        return JsonResponse({"path": path, "runs": out})

    def columns(self, path, runs, attrs, data):
        """``format=columns`` (step axis): the chart's grid once (``x``, ``first_steps``,
        ``last_steps``, ``counts``) and each run's values aligned with it (``data``, see
        :func:`runs.dashboard.columns_many`); a run without the series has no ``avg``."""
        out = []
        for run in runs:
            attr = attrs.get(run.pk)
            item = {"id": run.human_id, "state": run.state}
            if attr is not None:
                item.update(count=attr.count, first_step=attr.first_step, last_step=attr.last_step)
                item.update(data["series"].get(attr.pk, {}))
            out.append(item)
        grid = {k: data[k] for k in ("x", "first_steps", "last_steps", "counts")}
        return {"path": path, "format": "columns", **grid, "runs": out}
