"""The model registry's pages: a workspace's models, and one model with its versions, where those who
may write in the model's project move a version between stages (an HTMX form that swaps the
versions table; a plain POST and redirect without JavaScript)."""

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from projects import permissions
from projects.models import Workspace
from tracker.ui import ScopedUIViewMixin, template_for

from ..errors import ApiError
from ..models import Run
from . import services
from .api.views import decorate_models
from .models import ModelAlias, ModelVersion, RegisteredModel, Stage
from .querysets import key_metrics


class RegistryUIMixin(ScopedUIViewMixin):
    def scoped_queryset(self):
        return RegisteredModel.objects.for_user(self.request.user, "view").select_related(
            "workspace", "project__workspace", "created_by"
        )

    def get_workspace(self) -> Workspace:
        workspace = Workspace.objects.for_user(self.request.user, "view").filter(slug=self.kwargs["workspace"]).first()
        if workspace is None:
            raise Http404("No such workspace.")
        return workspace

    def get_model(self) -> RegisteredModel:
        model = self.get_queryset().filter(workspace__slug=self.kwargs["workspace"], name=self.kwargs["name"]).first()
        if model is None:
            raise Http404("No such model.")
        return model


class ModelListView(RegistryUIMixin, View):
    template_name = "registry/model_list.html"

    def get(self, request, workspace):
        ws = self.get_workspace()
        models = list(
            self.get_queryset().filter(workspace=ws).annotate(versions_held=Count("versions")).order_by("name")
        )
        decorate_models(models)
        context = {
            "workspace": ws,
            "models": models,
            "is_workspace_member": permissions.can(request.user, "member", ws),
        }
        return TemplateResponse(request, self.template_name, context)


class ModelDetailView(RegistryUIMixin, View):
    template_name = "registry/model_detail.html"

    def context(self, model: RegisteredModel) -> dict:
        versions = list(
            ModelVersion.objects.filter(model=model)
            .select_related("run__project__workspace", "created_by", "stage_changed_by")
            .prefetch_related(Prefetch("aliases", queryset=ModelAlias.objects.order_by("alias")))
            .order_by("-version")
        )
        metrics = key_metrics({v.run_id for v in versions if v.run_id})
        for version in versions:
            version.metrics = metrics.get(version.run_id, []) if version.run_id else []
            version.model = model
        current: dict[str, int] = {}
        for version in versions:  # newest first: the first seen in a stage is "the" version there
            current.setdefault(version.stage, version.version)
        actions = permissions.project_actions(self.request.user, model.project_id)
        return {
            "workspace": model.workspace,
            "model": model,
            "versions": versions,
            "current": current,
            "stages": Stage.choices,
            "can_write": "write" in actions,
            "is_workspace_member": permissions.can(self.request.user, "member", model.workspace),
        }

    def get(self, request, workspace, name):
        model = self.get_model()
        return TemplateResponse(request, template_for(request, self.template_name, "versions"), self.context(model))


class VersionStageView(RegistryUIMixin, View):
    """POST ``stage`` (and ``archive_existing``): move the version; answers the versions table to
    HTMX, a redirect to the model page otherwise. A refusal is shown above the table."""

    def post(self, request, workspace, name, version):
        model = self.get_model()
        found = ModelVersion.objects.filter(model=model, version=version).select_related("run").first()
        if found is None:
            raise Http404("No such version.")
        found.model = model
        error = ""
        try:
            services.transition_stage(
                request.user,
                found,
                request.POST.get("stage", ""),
                archive_existing=request.POST.get("archive_existing") in ("on", "1", "true"),
            )
        except ApiError as exc:
            error = exc.message
        if not getattr(request, "htmx", False):
            if error:
                messages.error(request, error)
            return redirect("registry:model_detail", workspace=model.workspace.slug, name=model.name)
        context = ModelDetailView(request=request, kwargs=self.kwargs).context(model) | {"stage_error": error}
        return TemplateResponse(request, "registry/model_detail.html#versions", context, status=400 if error else 200)


class RegisterVersionView(RegistryUIMixin, View):
    """POST from a run page's Files card: ``run`` (its UUID), ``path`` (a file or file-set field),
    ``name`` (a model of the workspace, or a new one), ``stage`` and ``description``. Registers the
    next version and opens the model's page; a refusal goes back to the run page, named."""

    def post(self, request, workspace):
        ws = self.get_workspace()
        run = (
            Run.objects.for_user(request.user, "view")
            .filter(project__workspace=ws, uuid=_uuid_or_none(request.POST.get("run", "")))
            .select_related("project__workspace")
            .first()
        )
        if run is None:
            raise Http404("No such run.")
        back = reverse("runs:run_detail", args=[ws.slug, run.project.slug, run.human_id]) + "#files"
        try:
            version = services.register_version(
                request.user,
                run,
                request.POST.get("path", ""),
                request.POST.get("name", "").strip(),
                stage=request.POST.get("stage") or None,
                description=request.POST.get("description", "")[:5000],
            )
        except ApiError as exc:
            if exc.status == 403:
                raise PermissionDenied(exc.message) from None
            messages.error(request, f"Not registered: {exc.message}")
            return redirect(back)
        messages.success(request, f"Registered {run.human_id} › {version.field_path} as version {version.version}.")
        return redirect("registry:model_detail", workspace=ws.slug, name=version.model.name)


def _uuid_or_none(text: str):
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None
