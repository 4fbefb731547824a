"""Delete for good every run that consumed an artifact version (GDPR: a person's data was in it), from
the artifact page: a confirmation page listing the runs, then one erasure per project
(``runs.services.erase_runs``: recorded and audited). Only runs the user may see are listed, and only
if the user manages every one of their projects; runs of projects they cannot see are never named."""

from collections import defaultdict

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views import View

from projects import permissions
from projects.models import Workspace
from tracker.ui import ScopedUIViewMixin

from .. import services
from ..errors import ApiError
from . import queries
from .models import Role


def consumers_plan(user, workspace: str, digest: str) -> dict:
    """What erasing the consumers of ``digest`` in ``workspace`` deletes: the runs ``user`` sees that
    consumed it, by project. 404 when they see no run linking the version; 403 unless they manage every
    one of those projects (so nothing is deleted before every right is known)."""
    ws = Workspace.objects.for_user(user, "view").filter(slug=workspace).first()
    version = queries.visible_version(user, digest) if ws else None
    if ws is None or version is None:
        raise Http404("no such artifact version")
    links = [link for link in queries.version_links(user, digest, Role.INPUT) if link.run.project.workspace_id == ws.pk]
    by_project: dict = defaultdict(dict)
    for link in links:
        by_project[link.run.project][link.run.pk] = link.run
    refused = [p for p in by_project if not permissions.can(user, "manage", p)]
    if refused:
        names = ", ".join(f"{p.workspace.slug}/{p.slug}" for p in refused)
        raise PermissionDenied(f"Erasing these runs takes the manage right on {names}.")
    short = version.hash[:12]
    name = version.artifact.name if version.artifact_id and version.artifact else ""
    return {
        "workspace": ws,
        "version": version,
        "short": short,
        "name": name,
        "subject": f"runs that consumed {name or 'artifact'}@{short}",
        "groups": [(project, list(runs.values())) for project, runs in by_project.items()],
        "count": sum(len(runs) for runs in by_project.values()),
    }


def erase_consumers(user, plan: dict, reason: str) -> list:
    """Carry out :func:`consumers_plan`'s ``plan``: one erasure record per project."""
    runs = [run for _project, group in plan["groups"] for run in group]
    if not runs:
        raise ApiError(400, "invalid", "No run you can see consumed this version; nothing was deleted.", field="digest")
    return services.erase_runs_by_project(user, runs, reason=reason, subject=plan["subject"])


class EraseConsumersView(ScopedUIViewMixin, View):
    template_name = "artifacts/erase_consumers.html"

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    def get(self, request, workspace, digest):
        return TemplateResponse(request, self.template_name, consumers_plan(request.user, workspace, digest))

    def post(self, request, workspace, digest):
        plan = consumers_plan(request.user, workspace, digest)
        if request.POST.get("confirm", "").strip() != plan["short"]:
            plan["error"] = f"Type {plan['short']} to confirm; nothing was deleted."
            return TemplateResponse(request, self.template_name, plan, status=400)
        try:
            records = erase_consumers(request.user, plan, request.POST.get("reason", ""))
        except ApiError as exc:
            plan["error"] = exc.message
            return TemplateResponse(request, self.template_name, plan, status=exc.status)
        erased = sum(len(r.runs) for r in records)
        messages.success(
            request,
            f"{erased} run{'s' if erased != 1 else ''} that consumed {plan['short']} deleted for good "
            f"(erasure record{'s' if len(records) != 1 else ''} {', '.join(f'#{r.pk}' for r in records)}).",
        )
        if plan["name"]:
            return redirect("artifact-page", workspace=workspace, name=plan["name"])
        return redirect("projects:project_list", workspace)
