from django.urls import reverse
from rest_framework import serializers

from ..models import ModelVersion, RegisteredModel, Stage


def version_urls(version: ModelVersion) -> dict:
    kwargs = {"workspace": version.model.workspace.slug, "model_name": version.model.name, "version": version.version}
    return {
        "url": reverse("model-version-detail", kwargs=kwargs),
        "download_url": reverse("model-version-download", kwargs=kwargs),
    }


class RegisteredModelSerializer(serializers.ModelSerializer):
    workspace = serializers.CharField(source="workspace.slug", read_only=True)
    project = serializers.CharField(source="project.full_name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    latest_versions = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = [
            "name",
            "workspace",
            "project",
            "description",
            "version_count",
            "latest_versions",
            "aliases",
            "created_by",
            "created_at",
            "updated_at",
            "url",
        ]

    version_count = serializers.IntegerField(read_only=True, source="version_counter")

    def get_latest_versions(self, model) -> dict[str, int]:
        """The newest version number in each stage that has one (``{"production": 3, "none": 5}``)."""
        return getattr(model, "latest_by_stage", {})

    def get_aliases(self, model) -> dict[str, int]:
        return getattr(model, "alias_map", {})

    def get_url(self, model) -> str:
        return reverse("registered-model-detail", kwargs={"workspace": model.workspace.slug, "model_name": model.name})


class ModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    project = serializers.CharField(max_length=100, help_text="the slug of the model's home project in the workspace")
    description = serializers.CharField(max_length=100_000, required=False, allow_blank=True, default="")


class ModelUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=100_000, required=False, allow_blank=True)


class VersionFileSerializer(serializers.Serializer):
    relpath = serializers.CharField()
    name = serializers.CharField()
    size = serializers.IntegerField()
    mime_type = serializers.CharField()
    sha256 = serializers.CharField(source="blob_id")


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    workspace = serializers.CharField(source="model.workspace.slug", read_only=True)
    project = serializers.CharField(source="model.project.full_name", read_only=True)
    run = serializers.SerializerMethodField()
    path = serializers.CharField(source="field_path", read_only=True)
    type = serializers.CharField(source="field_type", read_only=True)
    aliases = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    stage_changed_by = serializers.CharField(
        source="stage_changed_by.username", read_only=True, default=None, allow_null=True
    )
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "workspace",
            "project",
            "version",
            "stage",
            "description",
            "aliases",
            "run",
            "path",
            "type",
            "size",
            "file_count",
            "created_by",
            "created_at",
            "stage_changed_by",
            "stage_changed_at",
            "url",
            "download_url",
        ]

    def get_run(self, version) -> dict:
        """The run the version came from: ``id`` (kept after the run is purged), and while it exists
        its ``uuid``, ``name``, ``state``, whether it is in the trash, and its key ``metrics``."""
        run = version.run
        data: dict = {"id": version.run_label, "exists": run is not None}
        if run is not None:
            data |= {
                "uuid": str(run.uuid),
                "name": run.name,
                "state": run.state,
                "in_trash": run.deleted_at is not None,
            }
            metrics = self.context.get("metrics")
            if metrics is not None:
                data["metrics"] = dict(metrics.get(run.pk, []))
        return data

    def get_aliases(self, version) -> list[str]:
        return sorted(a.alias for a in version.aliases.all())

    def get_url(self, version) -> str:
        return version_urls(version)["url"]

    def get_download_url(self, version) -> str:
        return version_urls(version)["download_url"]


class ModelVersionDetailSerializer(ModelVersionSerializer):
    files = VersionFileSerializer(many=True, read_only=True)

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "files"]


class RegisterVersionSerializer(serializers.Serializer):
    run = serializers.CharField(max_length=300, help_text="the run: its UUID or 'workspace/project/KEY-N'")
    path = serializers.CharField(max_length=512, help_text="a file or file set field of the run")
    stage = serializers.ChoiceField(choices=Stage.choices, required=False, default=Stage.NONE)
    description = serializers.CharField(max_length=100_000, required=False, allow_blank=True, default="")


class VersionUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=100_000, allow_blank=True)


class StageChangeSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices)
    archive_existing = serializers.BooleanField(
        required=False, default=False, help_text="archive the model's other versions in the target stage"
    )


class AliasSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)


class VersionListQuerySerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices, required=False)


class DownloadQuerySerializer(serializers.Serializer):
    relpath = serializers.CharField(
        max_length=1024, required=False, help_text="one file of a file set (default: the whole set as a ZIP)"
    )
