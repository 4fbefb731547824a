"""The model registry's REST API, under ``/api/v1/workspaces/<workspace>/models/``.

Reads are scoped by ``RegisteredModel.objects.for_user`` (the model's home project); writes go
through ``runs.registry.services``, which decide who may write. "The version in a stage" is the
model's newest version in that stage; its download URL never changes while the model keeps its name.
"""

from django.db.models import Max, Prefetch
from django.http import Http404, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from projects.models import Project, Workspace
from tracker.api.views import ScopedGenericAPIView

from ...downloads import ranged_response
from ...errors import ApiError
from ...models import Run
from ...paths import entry_file_name, safe_file_name, safe_relpath
from ...refs import parse_run_ref
from ...storage import open_blob
from ...views.archives import stream_zip
from .. import services
from ..models import ModelAlias, ModelVersion, RegisteredModel
from ..querysets import key_metrics
from .serializers import (
    AliasSerializer,
    DownloadQuerySerializer,
    ModelCreateSerializer,
    ModelUpdateSerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    RegisteredModelSerializer,
    RegisterVersionSerializer,
    StageChangeSerializer,
    VersionListQuerySerializer,
    VersionUpdateSerializer,
)


class RegistryPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def decorate_models(models) -> None:
    """Set ``latest_by_stage`` and ``alias_map`` on each model: two queries for any number of models."""
    by_pk = {m.pk: m for m in models}
    for model in models:
        model.latest_by_stage, model.alias_map = {}, {}
    rows = ModelVersion.objects.filter(model_id__in=by_pk).values("model_id", "stage").annotate(top=Max("version"))
    for row in rows:
        by_pk[row["model_id"]].latest_by_stage[row["stage"]] = row["top"]
    for model_id, alias, number in ModelAlias.objects.filter(model_id__in=by_pk).values_list(
        "model_id", "alias", "version__version"
    ):
        by_pk[model_id].alias_map[alias] = number


def _versions():
    return ModelVersion.objects.select_related(
        "model__workspace", "model__project__workspace", "run", "created_by", "stage_changed_by"
    ).prefetch_related(Prefetch("aliases", queryset=ModelAlias.objects.order_by("alias")))


class RegistryView(ScopedGenericAPIView):
    """Views of a workspace's models: the models ``user`` may view."""

    def scoped_queryset(self):
        return RegisteredModel.objects.for_user(self.request.user, "view").select_related(
            "workspace", "project__workspace", "created_by"
        )

    def get_workspace(self) -> Workspace:
        slug = self.kwargs["workspace"]
        workspace = Workspace.objects.for_user(self.request.user, "view").filter(slug=slug).first()
        if workspace is None:
            raise Http404(f"workspace {slug!r} not found")
        return workspace

    def get_model(self) -> RegisteredModel:
        name = self.kwargs["model_name"]
        model = self.get_queryset().filter(workspace__slug=self.kwargs["workspace"], name=name).first()
        if model is None:
            raise Http404(f"model {name!r} not found")
        return model

    def get_version(self, model: RegisteredModel | None = None) -> ModelVersion:
        model = model or self.get_model()
        number = self.kwargs["version"]
        version = _versions().filter(model=model, version=number).first()
        if version is None:
            raise Http404(f"model {model.name!r} has no version {number}")
        return version

    def query(self, serializer_class):
        data = serializer_class(data=self.request.query_params)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def body(self, serializer_class):
        if not isinstance(self.request.data, dict):
            raise ApiError(400, "invalid", "the body must be a JSON object", field="body")
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def version_answer(self, version: ModelVersion, status_code: int = status.HTTP_200_OK) -> Response:
        version = _versions().prefetch_related("files").get(pk=version.pk)
        metrics = key_metrics([version.run_id]) if version.run_id else {}
        return Response(ModelVersionDetailSerializer(version, context={"metrics": metrics}).data, status=status_code)

    def model_answer(self, model: RegisteredModel, status_code: int = status.HTTP_200_OK) -> Response:
        model = self.get_queryset().get(pk=model.pk)
        decorate_models([model])
        return Response(RegisteredModelSerializer(model).data, status=status_code)


class ModelListView(RegistryView):
    pagination_class = RegistryPagination

    @extend_schema(responses=RegisteredModelSerializer(many=True))
    def get(self, request, workspace):
        models = self.get_queryset().filter(workspace=self.get_workspace()).order_by("name")
        page = self.paginate_queryset(models)
        decorate_models(page)
        return self.get_paginated_response(RegisteredModelSerializer(page, many=True).data)

    @extend_schema(request=ModelCreateSerializer, responses={201: RegisteredModelSerializer})
    def post(self, request, workspace):
        values = self.body(ModelCreateSerializer)
        ws = self.get_workspace()
        project = (
            Project.objects.for_user(request.user, "view")
            .select_related("workspace")
            .filter(workspace=ws, slug=values["project"])
            .first()
        )
        if project is None:
            raise ApiError(404, "not_found", f"project: no project {values['project']!r} in {ws.slug}", field="project")
        model = services.create_model(request.user, project, values["name"], values["description"])
        return self.model_answer(model, status.HTTP_201_CREATED)


class ModelDetailView(RegistryView):
    serializer_class = RegisteredModelSerializer

    @extend_schema(responses=RegisteredModelSerializer)
    def get(self, request, workspace, model_name):
        return self.model_answer(self.get_model())

    @extend_schema(request=ModelUpdateSerializer, responses=RegisteredModelSerializer)
    def patch(self, request, workspace, model_name):
        model = self.get_model()
        values = self.body(ModelUpdateSerializer)
        if "name" in values:
            services.rename_model(request.user, model, values["name"])
        if "description" in values:
            services.update_model(request.user, model, description=values["description"])
        return self.model_answer(model)

    @extend_schema(responses={204: None})
    def delete(self, request, workspace, model_name):
        services.delete_model(request.user, self.get_model())
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListView(RegistryView):
    pagination_class = RegistryPagination

    @extend_schema(parameters=[VersionListQuerySerializer], responses=ModelVersionSerializer(many=True))
    def get(self, request, workspace, model_name):
        model = self.get_model()
        params = self.query(VersionListQuerySerializer)
        versions = _versions().filter(model=model).order_by("-version")
        if params.get("stage"):
            versions = versions.filter(stage=params["stage"])
        page = self.paginate_queryset(versions)
        metrics = key_metrics({v.run_id for v in page if v.run_id})
        return self.get_paginated_response(ModelVersionSerializer(page, many=True, context={"metrics": metrics}).data)

    @extend_schema(request=RegisterVersionSerializer, responses={201: ModelVersionDetailSerializer})
    def post(self, request, workspace, model_name):
        values = self.body(RegisterVersionSerializer)
        ws = self.get_workspace()
        ref = parse_run_ref(values["run"], param="run")
        run = Run.objects.for_user(request.user, "view").with_related().filter(ref.q()).first() if ref else None
        if run is None:
            raise ApiError(404, "not_found", f"run: {values['run']!r} not found", field="run")
        if run.project.workspace_id != ws.pk:
            raise ApiError(400, "invalid", f"run: {run.human_id} is not in the workspace {ws.slug}", field="run")
        version = services.register_version(
            request.user, run, values["path"], model_name, stage=values["stage"], description=values["description"]
        )
        return self.version_answer(version, status.HTTP_201_CREATED)


class VersionDetailView(RegistryView):
    serializer_class = ModelVersionDetailSerializer

    @extend_schema(responses=ModelVersionDetailSerializer)
    def get(self, request, workspace, model_name, version):
        return self.version_answer(self.get_version())

    @extend_schema(request=VersionUpdateSerializer, responses=ModelVersionDetailSerializer)
    def patch(self, request, workspace, model_name, version):
        found = self.get_version()
        services.update_version(request.user, found, description=self.body(VersionUpdateSerializer)["description"])
        return self.version_answer(found)

    @extend_schema(responses={204: None})
    def delete(self, request, workspace, model_name, version):
        services.delete_version(request.user, self.get_version())
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionStageView(RegistryView):
    @extend_schema(request=StageChangeSerializer, responses=ModelVersionDetailSerializer)
    def post(self, request, workspace, model_name, version):
        found = self.get_version()
        values = self.body(StageChangeSerializer)
        services.transition_stage(request.user, found, values["stage"], archive_existing=values["archive_existing"])
        return self.version_answer(found)


def version_download(request, version: ModelVersion, relpath: str | None = None):
    """The version's file, one file of its file set (``relpath``), or its file set as a streamed ZIP."""
    files = version.files.select_related("blob").order_by("relpath")
    if version.field_type == "file" or relpath:
        if relpath:
            entry = files.filter(relpath=relpath).first() or next(
                (f for f in files if safe_relpath(f.relpath) == relpath), None
            )
            if entry is None:
                raise ApiError(
                    404, "not_found", f"relpath: version {version.version} has no file {relpath!r}", field="relpath"
                )
        else:
            entry = files.first()
            if entry is None:
                raise Http404("the version holds no file")
        response = ranged_response(
            request,
            open_blob(entry.blob.storage_key),
            size=entry.size,
            content_type=entry.mime_type,
            filename=entry_file_name(entry, version.field_path),
        )
        response["X-Runstore-Model-Version"] = str(version.version)
        return response
    root = safe_file_name(f"{version.model.name}-v{version.version}", fallback=f"model-v{version.version}")
    response = StreamingHttpResponse(stream_zip(files.iterator(chunk_size=500), root), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, f"{root}.zip") or ""
    response["X-Content-Type-Options"] = "nosniff"
    response["X-Runstore-Model-Version"] = str(version.version)
    return response


class VersionDownloadView(RegistryView):
    @extend_schema(parameters=[DownloadQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, workspace, model_name, version):
        return version_download(request, self.get_version(), self.query(DownloadQuerySerializer).get("relpath"))


class StageVersionView(RegistryView):
    """The model's newest version in ``stage`` (404 when none is there)."""

    def get_version_in_stage(self) -> ModelVersion:
        model = self.get_model()
        stage = services.check_stage(self.kwargs["stage"])
        version = _versions().filter(model=model, stage=stage).order_by("-version").first()
        if version is None:
            raise Http404(f"model {model.name!r} has no version in {stage}")
        return version

    @extend_schema(responses=ModelVersionDetailSerializer)
    def get(self, request, workspace, model_name, stage):
        return self.version_answer(self.get_version_in_stage())


class StageDownloadView(StageVersionView):
    """The stable download URL of "the production version of model X" (or any stage): the file, or
    the file set as a ZIP, of the model's newest version in that stage; ``X-Runstore-Model-Version``
    says which version was served."""

    @extend_schema(parameters=[DownloadQuerySerializer], responses={(200, "application/octet-stream"): bytes})
    def get(self, request, workspace, model_name, stage):
        found = self.get_version_in_stage()
        return version_download(request, found, self.query(DownloadQuerySerializer).get("relpath"))


class AliasView(RegistryView):
    serializer_class = ModelVersionDetailSerializer

    @extend_schema(responses=ModelVersionDetailSerializer)
    def get(self, request, workspace, model_name, alias):
        model = self.get_model()
        row = ModelAlias.objects.filter(model=model, alias=alias).first()
        if row is None:
            raise Http404(f"model {model.name!r} has no alias {alias!r}")
        return self.version_answer(row.version)

    @extend_schema(request=AliasSerializer, responses=ModelVersionDetailSerializer)
    def put(self, request, workspace, model_name, alias):
        model = self.get_model()
        number = self.body(AliasSerializer)["version"]
        version = _versions().filter(model=model, version=number).first()
        if version is None:
            raise ApiError(404, "not_found", f"version: model {model.name!r} has no version {number}", field="version")
        services.set_alias(request.user, version, alias)
        return self.version_answer(version)

    @extend_schema(responses={204: None})
    def delete(self, request, workspace, model_name, alias):
        model = self.get_model()
        if not services.delete_alias(request.user, model, alias):
            raise Http404(f"model {model.name!r} has no alias {alias!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)
