import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from tracker.ui import template_for

from .. import plots, table
from ..attributes import sys_fields
from ..models import Attribute, AttributeType
from ..palette import RUN_COLORS
from .base import ProjectScopedMixin, chart_page

COLOR_ENTRY = re.compile(r"^([A-Za-z0-9_-]+):#?([0-9a-fA-F]{6})$")


def chosen_colors(request) -> dict[str, str]:
    """Run colours the user picked, kept in the compare address as ``colors=VIS-1:1f77b4,VIS-2:d62728``.

    A fragment (htmx) request reads them from the page's address (``HX-Current-URL``), so
    the attribute table and the later chart pages show the same colours. Malformed entries
    are ignored: the run keeps its palette colour."""
    raw = request.GET.get("colors")
    if raw is None and request.headers.get("HX-Current-URL"):
        raw = (parse_qs(urlsplit(request.headers["HX-Current-URL"]).query).get("colors") or [None])[0]
    out = {}
    for entry in (raw or "").split(",")[:100]:
        match = COLOR_ENTRY.match(entry.strip())
        if match:
            out[match.group(1)] = "#" + match.group(2).lower()
    return out


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
        chosen = chosen_colors(request)
        for index, run in enumerate(runs):
            run.color = chosen.get(run.human_id) or RUN_COLORS[index % len(RUN_COLORS)]
        context["colors_json"] = json.dumps({r.human_id: r.color for r in runs})
        context["legend_json"] = [{"id": r.human_id, "name": r.name, "color": r.color, "state": r.state} for r in runs]
        if fragment == "diff":
            context.update(self.diff(runs))
        elif fragment == "values":
            return self.values(runs)
        elif fragment == "plots":
            context.update(plots.choose(runs, request.GET.get("metric", "").strip()))
        else:
            context.update(self.chart_page(runs))
            if fragment is None:
                # the first charts' data is requested from <head>, before the page's CSS and scripts load
                context["prefetch_paths_json"] = json.dumps(list(context["chart_paths"][:4]))
        name = fragment if fragment in self.fragments else None
        return TemplateResponse(request, template_for(request, self.template_name, name), context)

    def post(self, request, workspace, project):
        """The run table's "Compare selected": the selection arrives in a POST body (with the form's
        CSRF token) and is redirected to a clean ``?runs=VIS-1,VIS-2`` address, so no token or other
        form field ever lands in a URL, the history or a Referer header."""
        ids = [i for part in request.POST.getlist("runs") for i in part.split(",") if i]
        runs = self.runs_by_ids(ids)
        if not runs:
            messages.info(request, "Select the runs to compare first.")
            return redirect(reverse("runs:run_list", args=[workspace, project]))
        target = reverse("runs:compare", args=[workspace, project])
        return redirect(target + "?" + urlencode({"runs": ",".join(r.human_id for r in runs)}, safe=","))

    def chart_page(self, runs):
        query = self.request.GET.get("chart_q", "").strip()
        paths = Attribute.objects.filter(run__in=runs, type=AttributeType.FLOAT_SERIES)
        if query:
            paths = paths.filter(path__icontains=query)
        paths = paths.values_list("path", flat=True).distinct().order_by("path")
        page, context = chart_page(self.request, paths)
        return {**context, "chart_count": paths.count() if page == 1 else None, "chart_q": query}

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
            "diff_prev_url": "?" + urlencode({**base, "diff_page": page.previous_page_number()})
            if page.has_previous()
            else "",
            "diff_next_url": "?" + urlencode({**base, "diff_page": page.next_page_number()}) if page.has_next() else "",
        }

    def values(self, runs):
        """Values of chosen paths for the parallel-coordinates and scatter plots (JSON): numbers, or
        strings for categorical fields (strings, booleans); null where a run lacks the field."""
        paths = [p for p in self.request.GET.getlist("p") if p][:30]
        by_path, _ = plots.read_values(runs, paths)
        return JsonResponse(
            {
                "paths": paths,
                "runs": [
                    {"id": r.human_id, "color": r.color, "values": [by_path.get(p, {}).get(r.pk) for p in paths]}
                    for r in runs
                ],
            }
        )
