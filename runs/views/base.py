from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied

from projects.models import Project
from tracker.params import INT64_MAX, int_param, parse_run_number
from tracker.ui import ScopedUIViewMixin

from ..models import Run

COMPARE_MAX_RUNS = 50
MAX_PAGE = 10**9  # beyond any table; keeps page * size inside 64 bits


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
