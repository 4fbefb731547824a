from rest_framework import serializers

from ..models import Project, Visibility, Workspace, slug_validator


class WorkspaceSerializer(serializers.ModelSerializer):
    personal = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["slug", "name", "personal", "created_at"]
        read_only_fields = ["created_at"]

    def get_personal(self, obj) -> bool:
        return obj.personal_owner_id is not None


class WorkspaceCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=100, validators=[slug_validator])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ProjectSerializer(serializers.ModelSerializer):
    workspace = serializers.CharField(source="workspace.slug", read_only=True)
    name = serializers.CharField(source="full_name", read_only=True)

    class Meta:
        model = Project
        fields = ["workspace", "slug", "name", "key", "description", "visibility", "run_counter", "created_at"]
        read_only_fields = fields


class ProjectCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=100, validators=[slug_validator])
    key = serializers.CharField(max_length=10, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
