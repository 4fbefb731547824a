from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.views.generic import DetailView, ListView

from projects.models import Project
from tracker.ui import ScopedUIViewMixin, template_for

from .attributes import run_fields
from .models import Attribute, Run


class ProjectScopedMixin(ScopedUIViewMixin):
    def get_project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_object_or_404(
                Project.objects.for_user(self.request.user, "view").select_related("workspace"),
                workspace__slug=self.kwargs["workspace"],
                slug=self.kwargs["project"],
            )
        return self._project


class RunListView(ProjectScopedMixin, ListView):
    template_name = "runs/run_list.html"
    context_object_name = "runs"
    paginate_by = 50

    def scoped_queryset(self):
        return (
            Run.objects.for_user(self.request.user, "view")
            .filter(project=self.get_project())
            .select_related("owner", "project")
            .prefetch_related(Prefetch("attributes", queryset=Attribute.objects.filter(path="sys/tags"), to_attr="tag_attributes"))
            .order_by("-created_at", "-id")
        )

    def get_template_names(self):
        return [template_for(self.request, self.template_name, "table")]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["project"] = self.get_project()
        for run in context["runs"]:
            run.tags = run.tag_attributes[0].json_value if run.tag_attributes else []
        return context


class RunDetailView(ProjectScopedMixin, DetailView):
    template_name = "runs/run_detail.html"
    context_object_name = "run"

    def scoped_queryset(self):
        return Run.objects.for_user(self.request.user, "view").select_related("owner", "project", "project__workspace")

    def get_object(self, queryset=None):
        project = self.get_project()
        key, _, number = self.kwargs["run_id"].rpartition("-")
        if key != project.key or not number.isdigit():
            raise Http404("no such run")
        return get_object_or_404(self.get_queryset(), project=project, number=int(number))

    def get_template_names(self):
        return [template_for(self.request, self.template_name, "fields")]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.request.GET.get("q", "").strip()
        attributes = Attribute.objects.filter(run=self.object).order_by("path")
        if query:
            attributes = attributes.filter(path__icontains=query)
        fields = run_fields(self.object, attributes[:2000])
        if query:
            fields = [f for f in fields if query.lower() in f["path"].lower()]
        groups: dict = {}
        for f in fields:
            groups.setdefault(f["path"].split("/", 1)[0], []).append(f)
        context.update(project=self.get_project(), field_groups=sorted(groups.items()), query=query)
        return context
