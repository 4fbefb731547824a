from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from ..errors import ApiError
from ..models import ExportState, Run, RunState
from ..paths import file_name_error

SHA256_CHARS = set("0123456789abcdef")

MAX_TAGS = 1000


class RunSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="human_id", read_only=True)
    project = serializers.CharField(source="project.full_name", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True, default=None, allow_null=True)
    tags = serializers.SerializerMethodField()
    creation_time = serializers.DateTimeField(source="created_at", read_only=True)
    modification_time = serializers.DateTimeField(source="modified_at", read_only=True)
    ping_time = serializers.DateTimeField(source="ping_at", read_only=True)
    finish_time = serializers.DateTimeField(source="finished_at", read_only=True, allow_null=True)
    running_time = serializers.FloatField(read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "uuid",
            "project",
            "name",
            "description",
            "owner",
            "state",
            "tags",
            "custom_run_id",
            "creation_time",
            "modification_time",
            "ping_time",
            "finish_time",
            "running_time",
        ]
        read_only_fields = fields

    def get_tags(self, run) -> list[str]:
        prefetched = getattr(run, "tag_attributes", None)
        if prefetched is not None:
            return list(prefetched[0].json_value or []) if prefetched else []
        attr = run.attributes.filter(path="sys/tags").first()
        return list(attr.json_value or []) if attr else []

    def to_representation(self, run):
        """The fields above, built directly (the same values DRF's field-by-field walk gives, at a
        tenth of its cost: a page of the run list holds up to 1,000 runs)."""
        zone = timezone.get_current_timezone()
        owner = run.owner
        return {
            "id": run.human_id,
            "uuid": str(run.uuid),
            "project": run.project.full_name,
            "name": str(run.name),
            "description": str(run.description),
            "owner": None if owner is None else str(owner.username),
            "state": str(run.state),
            "tags": self.get_tags(run),
            "custom_run_id": None if run.custom_run_id is None else str(run.custom_run_id),
            "creation_time": _iso(run.created_at, zone),
            "modification_time": _iso(run.modified_at, zone),
            "ping_time": _iso(run.ping_at, zone),
            "finish_time": _iso(run.finished_at, zone),
            "running_time": float(run.running_time),
        }


def _iso(value, zone) -> str | None:
    """DRF's ISO 8601 form of a datetime: in the current time zone, UTC written "Z"."""
    if not value:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TagListField(serializers.ListField):
    child = serializers.CharField(max_length=1024, allow_blank=False)
    max_length = MAX_TAGS


class RunCreateSerializer(serializers.Serializer):
    project = serializers.CharField(max_length=201, help_text="'workspace/project'; created when missing and allowed")
    name = serializers.CharField(max_length=250, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=65536, required=False, allow_blank=True, default="")
    tags = TagListField(required=False, default=list)
    custom_run_id = serializers.CharField(max_length=128, required=False, allow_null=True, default=None)
    creation_time = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="ISO 8601; the run's original creation time (an import), not in the future; "
        "used only when the run is created",
    )


class RunUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=250, required=False, allow_blank=True)
    description = serializers.CharField(max_length=65536, required=False, allow_blank=True)
    state = serializers.ChoiceField(choices=RunState.choices, required=False)
    tags = TagListField(required=False)


class BatchSerializer(serializers.Serializer):
    """Shape of a batch; the operations are checked by ``runs.ingest.parse_ops``."""

    stream = serializers.CharField(max_length=64, help_text="writer id chosen by the client (e.g. a UUID)")
    seq = serializers.IntegerField(min_value=0, max_value=2**63 - 1, help_text="batch number within the stream")
    ops = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=True,
        help_text="operations (docs/api.md); in MessagePack a float append's values, steps and timestamps may be "
        "bin columns of packed little-endian float64 / int64 / float64 items",
    )


class BatchResultSerializer(serializers.Serializer):
    applied = serializers.BooleanField()
    duplicate = serializers.BooleanField()
    ops = serializers.IntegerField()
    points = serializers.IntegerField()


MAX_STEP = 2**63 - 1  # steps are 64-bit


class SeriesQuerySerializer(serializers.Serializer):
    path = serializers.CharField(max_length=512)
    buckets = serializers.IntegerField(min_value=1, max_value=10_000, default=1000)
    from_step = serializers.IntegerField(min_value=0, max_value=MAX_STEP, required=False)
    to_step = serializers.IntegerField(min_value=0, max_value=MAX_STEP, required=False)


class PointsQuerySerializer(serializers.Serializer):
    path = serializers.CharField(max_length=512)
    after_step = serializers.IntegerField(min_value=-1, max_value=MAX_STEP, required=False)
    from_step = serializers.IntegerField(min_value=0, max_value=MAX_STEP, required=False)
    to_step = serializers.IntegerField(min_value=0, max_value=MAX_STEP, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=100_000, default=10_000)


class FileQuerySerializer(serializers.Serializer):
    path = serializers.CharField(max_length=512)
    relpath = serializers.CharField(max_length=1024, required=False, allow_blank=True)
    step = serializers.IntegerField(min_value=0, required=False)


# --- the query endpoints' POST bodies (the same parameters as their GET query strings) -------------

_PATHS = serializers.ListField(child=serializers.CharField(max_length=1024), max_length=200, required=False)


class RunQueryRequestSerializer(serializers.Serializer):
    """``POST /runs/query``: the run list's query parameters as a JSON object."""

    project = serializers.CharField(max_length=300, help_text="'workspace/project'")
    query = serializers.CharField(
        max_length=10_000,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="filter in the query language",
    )
    sort = serializers.ListField(
        child=serializers.CharField(max_length=1024),
        max_length=5,
        required=False,
        help_text="fields, '-' for descending (default ['-sys/creation_time'])",
    )
    columns = serializers.ListField(child=serializers.CharField(max_length=1024), max_length=200, required=False)
    group_by = serializers.ListField(child=serializers.CharField(max_length=1024), max_length=3, required=False)
    group = serializers.ListField(
        child=serializers.JSONField(allow_null=True),
        max_length=3,
        required=False,
        allow_null=True,
        help_text="the key of one group (one value per group_by field): list that group's runs",
    )
    state = serializers.ChoiceField(choices=RunState.values, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=2**62, required=False)


class RunGroupsRequestSerializer(serializers.Serializer):
    """``POST /runs/groups``: the groups' query parameters as a JSON object."""

    project = serializers.CharField(max_length=300)
    query = serializers.CharField(max_length=10_000, required=False, allow_blank=True, trim_whitespace=False)
    group_by = serializers.ListField(child=serializers.CharField(max_length=1024), min_length=1, max_length=3)
    aggregates = _PATHS
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False)


class RunSuggestRequestSerializer(serializers.Serializer):
    """``POST /runs/suggest``: the query editor's text and cursor as a JSON object."""

    project = serializers.CharField(max_length=300)
    text = serializers.CharField(max_length=10_000, required=False, allow_blank=True, trim_whitespace=False)
    cursor = serializers.IntegerField(min_value=0, max_value=10_000, required=False)


class RunFieldsRequestSerializer(serializers.Serializer):
    """``POST /runs/fields``: the field search as a JSON object."""

    project = serializers.CharField(max_length=300)
    search = serializers.CharField(max_length=1024, required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, max_value=5000, required=False)


# --- responses (they describe what the views return; the views build plain dicts) -------------


class FloatOrSpecialField(serializers.JSONField):
    """A float; NaN and ±Infinity travel as the strings "NaN", "Infinity", "-Infinity" in JSON."""


class FieldValueSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.CharField(help_text="int, float, bool, string, datetime, string_set, float_series, ...")
    value = serializers.JSONField(allow_null=True, help_text="typed by 'type'; series and files are summaries")


class RunAttributesSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="the run's human id")
    fields = FieldValueSerializer(many=True)  # type: ignore[assignment]  # the JSON key; DRF's metaclass takes it off the class


class SeriesBucketsSerializer(serializers.Serializer):
    path = serializers.CharField()
    count = serializers.IntegerField(help_text="points in the whole series")
    bucket_width = serializers.IntegerField(allow_null=True, help_text="steps per bucket; null when the range is empty")
    from_step = serializers.IntegerField(allow_null=True)
    to_step = serializers.IntegerField(allow_null=True)
    steps = serializers.ListField(child=serializers.IntegerField(), help_text="bucket starts")
    first_steps = serializers.ListField(child=serializers.IntegerField())
    last_steps = serializers.ListField(child=serializers.IntegerField())
    counts = serializers.ListField(child=serializers.IntegerField())
    min = serializers.ListField(child=FloatOrSpecialField())
    max = serializers.ListField(child=FloatOrSpecialField())
    avg = serializers.ListField(child=FloatOrSpecialField())
    last = serializers.ListField(child=FloatOrSpecialField())


class SeriesPointsSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.ChoiceField(choices=["float_series", "string_series"])
    steps = serializers.ListField(child=serializers.IntegerField())
    timestamps = serializers.ListField(child=serializers.FloatField())
    values = serializers.ListField(
        child=serializers.JSONField(), help_text="floats (NaN/±Infinity as strings) or strings"
    )
    next_after_step = serializers.IntegerField(allow_null=True, help_text="pass as after_step for the next page")


class FileEntrySerializer(serializers.Serializer):
    relpath = serializers.CharField(allow_blank=True)
    step = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    mime_type = serializers.CharField()


class FileListSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.ChoiceField(choices=["file", "file_set", "file_series"])
    files = FileEntrySerializer(many=True)


class UploadResultSerializer(serializers.Serializer):
    """An upload as this caller sent it (never what another project stored for the same bytes)."""

    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    mime_type = serializers.CharField()


class FileUrlSerializer(serializers.Serializer):
    url = serializers.URLField()
    expires_in = serializers.IntegerField(allow_null=True, help_text="seconds; null when the URL does not expire")
    direct = serializers.BooleanField(help_text="true: a presigned URL of the S3 store")
    size = serializers.IntegerField()


class ProcessingSerializer(serializers.Serializer):
    state = serializers.CharField()
    detected_mime_type = serializers.CharField(allow_null=True)
    metadata = serializers.DictField()
    error = serializers.CharField(allow_null=True)
    preview_error = serializers.CharField(allow_null=True)
    previews = serializers.ListField(child=serializers.CharField())


class FileInfoSerializer(serializers.Serializer):
    path = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    mime_type = serializers.CharField()
    processing = ProcessingSerializer()


class UploadPartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField()
    url = serializers.URLField()


class DirectUploadStartSerializer(serializers.Serializer):
    """``exists: true``: this project holds the content already (the other fields of an upload
    result follow). ``exists: false``: PUT the bytes to ``url`` (or each part to its URL), then
    POST ``complete``."""

    exists = serializers.BooleanField()
    sha256 = serializers.CharField(required=False)
    size = serializers.IntegerField(required=False)
    name = serializers.CharField(required=False, allow_blank=True)
    mime_type = serializers.CharField(required=False)
    upload_id = serializers.UUIDField(required=False)
    expires_in = serializers.IntegerField(required=False)
    method = serializers.ChoiceField(choices=["PUT"], required=False)
    url = serializers.URLField(required=False)
    part_size = serializers.IntegerField(required=False)
    parts = UploadPartSerializer(many=True, required=False)


class ExportSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    project = serializers.CharField()
    run = serializers.CharField(allow_null=True)
    state = serializers.ChoiceField(choices=ExportState.choices)
    progress = serializers.IntegerField()
    total = serializers.IntegerField()
    size = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.URLField(allow_null=True)


class ExportListSerializer(serializers.Serializer):
    results = ExportSerializer(many=True)


class RunRowSerializer(RunSerializer):
    """A run of a query page: with ``columns``, ``fields`` holds each chosen column's value."""

    fields = serializers.DictField(  # type: ignore[assignment]  # the JSON key, as above
        child=serializers.JSONField(allow_null=True),
        required=False,
        help_text="column spec (e.g. 'eval/acc', 'train/loss:last') → value; only when columns were chosen",
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "fields"]

    def to_representation(self, run):
        return serializers.ModelSerializer.to_representation(self, run)


class ColumnTypeSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.CharField(
        allow_null=True, help_text="the field's type(s) in the project, '/'-joined; null if unknown"
    )


class RunPageSerializer(serializers.Serializer):
    """A page of runs. Without ``project``: every visible run, newest first (``count``, ``next``,
    ``previous``, ``results``). With ``project``, the query engine's page adds ``query``, ``columns``
    and ``warnings``, and each run its chosen ``fields``."""

    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    query = serializers.CharField(required=False, allow_blank=True, help_text="with project: the normalised query")
    columns = ColumnTypeSerializer(
        many=True, required=False, help_text="with project: the chosen columns and their types"
    )
    warnings = serializers.ListField(child=serializers.CharField(), required=False)
    results = RunRowSerializer(many=True)


class AggregateSerializer(serializers.Serializer):
    avg = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class RunGroupSerializer(serializers.Serializer):
    key = serializers.ListField(child=serializers.JSONField(allow_null=True), help_text="one value per group_by field")
    count = serializers.IntegerField()
    aggregates = serializers.DictField(child=AggregateSerializer())


class RunGroupsSerializer(serializers.Serializer):
    group_by = serializers.ListField(child=serializers.CharField())
    groups = RunGroupSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())


class FieldTypeSerializer(serializers.Serializer):
    path = serializers.CharField()
    type = serializers.CharField()


class RunFieldsSerializer(serializers.Serializer):
    fields = FieldTypeSerializer(many=True)  # type: ignore[assignment]  # the JSON key, as above


# "from" is a Python keyword, so the suggestions' schema is written out.
SUGGESTIONS_SCHEMA = {
    "type": "object",
    "required": ["context", "from", "to", "items"],
    "properties": {
        "context": {"type": "string", "description": "path, operator, value, connective or error"},
        "from": {"type": "integer", "description": "start of the text the chosen item replaces"},
        "to": {"type": "integer", "description": "end of that text"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "insert", "detail"],
                "properties": {"label": {"type": "string"}, "insert": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
        "error": {
            "type": "string",
            "description": "with context 'error': why the text before the cursor does not parse",
        },
    },
}


class DirectUploadSerializer(serializers.Serializer):
    sha256 = serializers.CharField(min_length=64, max_length=64)
    size = serializers.IntegerField(min_value=0)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    mime_type = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate_sha256(self, value):
        if not set(value) <= SHA256_CHARS:
            raise serializers.ValidationError("must be 64 lower-case hex characters")
        return value

    def validate_name(self, value):
        reason = file_name_error(value) if value else None
        if reason:
            raise serializers.ValidationError(reason)
        return value

    def validate_size(self, value):
        limit = settings.RUNSTORE_MAX_UPLOAD_BYTES
        if value > limit:
            raise ApiError(
                413,
                "upload_too_large",
                f"size: {value} bytes is above the upload limit of {limit} bytes (RUNSTORE_MAX_UPLOAD_BYTES)",
                field="size",
                limit=limit,
            )
        return value


class CompletePartSerializer(serializers.Serializer):
    part_number = serializers.IntegerField(min_value=1, max_value=10_000)
    etag = serializers.CharField(max_length=200)


class CompleteUploadSerializer(serializers.Serializer):
    parts = CompletePartSerializer(many=True, required=False)


class ExportRequestSerializer(serializers.Serializer):
    project = serializers.CharField(max_length=201)
    run = serializers.CharField(max_length=300, required=False)
