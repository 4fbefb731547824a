"""UI: a named artifact's page (versions, files, runs, a diff of two versions) and the run page's
lineage graph; both see versions only through runs of projects the user may view."""

from django.core.paginator import Paginator
from django.http import Http404
from django.views.generic import TemplateView

from projects import permissions
from projects.models import Workspace
from tracker.ui import ScopedUIViewMixin

from ..views.base import ProjectScopedMixin
from . import graph, listing, queries

FILES_SHOWN = 500
ARTIFACTS_PER_PAGE = 50


class RunLineageGraphView(ProjectScopedMixin, TemplateView):
    """The run's inputs → run → outputs, one level each side; a neighbour run's graph replaces it (HTMX)."""

    template_name = "artifacts/_lineage_graph.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        run = self.get_run(self.kwargs["run_id"])
        run.project = self.get_project()
        context.update(run=run, project=run.project, graph=graph.layout(run, queries.run_graph(self.request.user, run)))
        return context


class ArtifactPageView(ScopedUIViewMixin, TemplateView):
    template_name = "artifacts/artifact_detail.html"

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        workspace = Workspace.objects.filter(slug=self.kwargs["workspace"]).first()
        artifact, versions = (
            queries.artifact_versions(self.request.user, workspace, self.kwargs["name"]) if workspace else (None, [])
        )
        if artifact is None:
            raise Http404("no such artifact")
        by_hash = {v.hash: v for v in versions}
        selected = by_hash.get(self.request.GET.get("v", "")) or versions[0]
        old, new = by_hash.get(self.request.GET.get("a", "")), by_hash.get(self.request.GET.get("b", ""))
        if old is None and new is None and len(versions) > 1 and "a" not in self.request.GET:
            old, new = versions[1], versions[0]  # the last change by default
        context.update(
            workspace=workspace,
            artifact=artifact,
            versions=versions,
            selected=selected,
            files=selected.files[:FILES_SHOWN],
            more_files=max(0, len(selected.files) - FILES_SHOWN),
            diff=queries.diff(old, new) if old is not None and new is not None and old != new else None,
            old=old,
            new=new,
        )
        return context


class ArtifactListPageView(ScopedUIViewMixin, TemplateView):
    """A workspace's named artifacts (data sets, models): versions, size, newest version, consumers and
    producers, counted over the runs the user may view; filtered by name, paged."""

    template_name = "artifacts/artifact_list.html"

    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        workspace = Workspace.objects.for_user(user, "view").filter(slug=self.kwargs["workspace"]).first()
        if workspace is None:
            raise Http404("no such workspace")
        name = self.request.GET.get("q", "").strip()[: listing.MAX_NAME_FILTER]
        links = listing.workspace_links(user, workspace)
        page = Paginator(listing.artifact_rows(links, name), ARTIFACTS_PER_PAGE).get_page(self.request.GET.get("page"))
        context.update(
            workspace=workspace,
            artifacts=listing.summaries(links, page.object_list),
            page=page,
            q=name,
            is_workspace_member=permissions.can(user, "member", workspace),
        )
        return context
