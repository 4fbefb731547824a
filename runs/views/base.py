from django.http import Http404
from django.shortcuts import get_object_or_404

from projects.models import Project
from tracker.params import INT64_MAX, int_param
from tracker.ui import ScopedUIViewMixin

from ..models import Run
from ..refs import parse_run_ref

COMPARE_MAX_RUNS = 50
MAX_PAGE = 10**9  # beyond any table; keeps page * size inside 64 bits
CHARTS_PER_PAGE = 24


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
        return (
            Run.objects.for_user(self.request.user, "view").filter(project=self.get_project()).select_related("owner")
        )

    def get_run(self, run_id: str) -> Run:
        project = self.get_project()
        ref = parse_run_ref(run_id, project=project)
        if ref is None or ref.number is None:
            raise Http404("no such run")
        run = get_object_or_404(self.get_queryset(), number=ref.number)
        run.project = project
        return run

    def runs_by_ids(
        self, ids: list[str], limit: int = COMPARE_MAX_RUNS, param: str = "runs", queryset=None
    ) -> list[Run]:
        """Visible runs of this project by human id (``VIS-3``), in the given order, at most ``limit``;
        ids of other projects are skipped, a run number beyond 64 bits is a 400 naming ``param``.
        ``queryset``: where to look instead of the view's scope (the trash)."""
        project = self.get_project()
        numbers = []
        for raw in ids:
            ref = parse_run_ref(raw, project=project, param=param)
            if ref is not None and ref.number is not None and ref.number not in numbers:
                numbers.append(ref.number)
        numbers = numbers[:limit]
        found = {
            r.number: r for r in (self.get_queryset() if queryset is None else queryset).filter(number__in=numbers)
        }
        runs = [found[n] for n in numbers if n in found]
        for run in runs:
            run.project = project
        return runs


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


def chart_page(request, paths) -> tuple[int, dict]:
    """The page of charts ``chart_page`` asks for: its number and the context of one page of
    ``paths`` (an ordered queryset of chart paths), with the next page's number when there is one."""
    page = int_param(request.GET, "chart_page", 1, minimum=1, maximum=MAX_PAGE) or 1
    start = (page - 1) * CHARTS_PER_PAGE
    rows = list(paths[start : start + CHARTS_PER_PAGE + 1])
    return page, {
        "chart_paths": rows[:CHARTS_PER_PAGE],
        "next_chart_page": page + 1 if len(rows) > CHARTS_PER_PAGE else None,
    }
