"""Shapes of the workspace artifact list, the erasure endpoints' bodies and the erasure record."""

from rest_framework import serializers

from .listing import MAX_NAME_FILTER

MAX_ERASE_RUNS = 1000


class ArtifactListQuerySerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=MAX_NAME_FILTER, required=False, allow_blank=True, help_text="names containing this (any case)"
    )
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=2**62, required=False)


class ArtifactLatestSerializer(serializers.Serializer):
    hash = serializers.CharField()
    size = serializers.IntegerField()
    file_count = serializers.IntegerField()
    first_seen = serializers.DateTimeField()


class ArtifactSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    versions = serializers.IntegerField(help_text="versions linked by runs you may view")
    size = serializers.IntegerField(help_text="bytes of those versions added up")
    latest = ArtifactLatestSerializer(allow_null=True, help_text="the newest of those versions")
    consumers = serializers.IntegerField(help_text="runs you may view that consumed one of them")
    producers = serializers.IntegerField(help_text="runs you may view that produced one of them")
    last_used = serializers.DateTimeField(allow_null=True, help_text="when a visible run last linked one")


class ErasureRequestSerializer(serializers.Serializer):
    runs = serializers.ListField(
        child=serializers.CharField(max_length=300),
        min_length=1,
        max_length=MAX_ERASE_RUNS,
        help_text="runs to delete for good: UUIDs or 'workspace/project/KEY-N'",
    )
    reason = serializers.CharField(allow_blank=True, trim_whitespace=False, help_text="why (recorded for good)")


class ConsumersErasureRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, trim_whitespace=False, help_text="why (recorded for good)")


class ErasedRunSerializer(serializers.Serializer):
    uuid = serializers.CharField()
    id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    created_at = serializers.CharField()


class ErasureSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_name")
    project = serializers.CharField(source="project_label")
    subject = serializers.CharField()
    reason = serializers.CharField()
    runs = ErasedRunSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())


class ErasureListSerializer(serializers.Serializer):
    erasures = ErasureSerializer(many=True)


class ConsumersPlanSerializer(serializers.Serializer):
    workspace = serializers.CharField()
    hash = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    count = serializers.IntegerField(help_text="runs that would be deleted for good")
    runs = serializers.ListField(child=serializers.DictField())
