"""Delete a run for good (GDPR erasure), from its page: a confirmation page that says what goes, then
the erasure, recorded (``runs.models.Erasure``) and audited. For those who manage the run's project."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views import View

from projects import permissions

from .. import services
from ..errors import ApiError
from ..models import Attribute, AttributeType, FileEntry, Upload
from .base import ProjectScopedMixin


class RunEraseView(ProjectScopedMixin, View):
    template_name = "runs/run_erase.html"

    def context(self, run, **extra) -> dict:
        series = Attribute.objects.filter(run=run, type__in=[AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES])
        return {
            "run": run,
            "project": self.get_project(),
            "fields": Attribute.objects.filter(run=run).count(),
            "series": series.count(),
            "points": series.aggregate(n=Sum("count"))["n"] or 0,
            "files": FileEntry.objects.filter(attribute__run=run).count() or Upload.objects.filter(run=run).count(),
            **extra,
        }

    def check(self, run) -> None:
        if not permissions.can(self.request.user, "manage", run.project):
            raise PermissionDenied("Deleting a run for good takes the manage right on its project.")

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        self.check(run)
        return TemplateResponse(request, self.template_name, self.context(run))

    def post(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        self.check(run)
        typed = request.POST.get("confirm", "").strip()
        if typed != run.human_id:
            error = f"Type {run.human_id} to confirm; nothing was deleted."
            return TemplateResponse(request, self.template_name, self.context(run, error=error), status=400)
        try:
            record = services.erase_runs(
                request.user, [run], reason=request.POST.get("reason", ""), subject=f"run {run.human_id}"
            )
        except ApiError as exc:
            return TemplateResponse(
                request, self.template_name, self.context(run, error=exc.message), status=exc.status
            )
        counts = record.counts
        messages.success(
            request,
            f"{run.human_id} was deleted for good: {counts['series']} series, {counts['points']} points, "
            f"{counts['blobs_deleted']} stored files (erasure record #{record.pk}).",
        )
        return redirect("runs:run_list", workspace, project)
