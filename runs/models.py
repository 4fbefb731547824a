import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Left
from django.utils import timezone

from projects.models import Project

from .querysets import AttributeQuerySet, ExportQuerySet, RunQuerySet, SavedViewQuerySet


class RunState(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"
    # Not final: its pings stopped (runs.services.mark_crashed_runs); a ping or a write makes it running again.
    CRASHED = "crashed", "Crashed"


class AttributeType(models.TextChoices):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    DATETIME = "datetime"
    STRING_SET = "string_set"
    FILE = "file"
    FILE_SET = "file_set"
    FLOAT_SERIES = "float_series"
    STRING_SERIES = "string_series"
    FILE_SERIES = "file_series"


STRING_INDEX_CHARS = 200

SERIES_TYPES = {AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES, AttributeType.FILE_SERIES}


class Run(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveBigIntegerField(editable=False)
    name = models.CharField(max_length=250, blank=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="runs")
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.RUNNING)
    custom_run_id = models.CharField(max_length=128, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    modified_at = models.DateTimeField(default=timezone.now)
    ping_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="run_number_unique"),
            models.UniqueConstraint(
                fields=["project", "custom_run_id"],
                condition=models.Q(custom_run_id__isnull=False),
                name="run_custom_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="run_project_created")]

    def __str__(self):
        return self.human_id

    @property
    def human_id(self) -> str:
        return f"{self.project.key}-{self.number}"

    @property
    def running_time(self) -> float:
        end = self.finished_at or (self.ping_at if self.state != RunState.RUNNING else timezone.now())
        return max(0.0, (end - self.created_at).total_seconds())


class Attribute(models.Model):
    """One field of a run, addressed by path; its type is fixed once written.

    Scalars live in the typed ``*_value`` columns. For a series the row holds
    its running statistics (``float_value``/``string_value`` = last value) and
    its points live in the point tables, keyed by this row's id.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attributes")
    # Denormalised from run.project so the query engine's indexes start with the project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    path = models.CharField(max_length=512)
    type = models.CharField(max_length=16, choices=AttributeType.choices)
    int_value = models.BigIntegerField(null=True, blank=True)
    float_value = models.FloatField(null=True, blank=True)
    bool_value = models.BooleanField(null=True, blank=True)
    string_value = models.TextField(null=True, blank=True)
    datetime_value = models.DateTimeField(null=True, blank=True)
    # The first STRING_INDEX_CHARS characters of string_value, stored by the database: the
    # string index holds this column (PostgreSQL's b-tree entries are limited to ~2.7 kB), so
    # equality tests and value counts are answered from the index alone.
    string_prefix = models.GeneratedField(
        expression=Left("string_value", STRING_INDEX_CHARS), output_field=models.TextField(), db_persist=True
    )
    json_value = models.JSONField(null=True, blank=True)
    # series statistics, maintained on append
    count = models.BigIntegerField(default=0)
    first_step = models.BigIntegerField(null=True, blank=True)
    last_step = models.BigIntegerField(null=True, blank=True)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    sum_value = models.FloatField(null=True, blank=True)
    finite_count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = AttributeQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="attribute_run_path_unique")]
        indexes = [
            # Query-engine indexes: a range on one field of one project, ending in run_id so the
            # "runs whose field matches" subqueries are answered from the index alone.
            models.Index(fields=["project", "path", "float_value", "run"], name="attr_project_path_float"),
            models.Index(fields=["project", "path", "int_value", "run"], name="attr_project_path_int"),
            models.Index(fields=["project", "path", "datetime_value", "run"], name="attr_project_path_datetime"),
            models.Index(fields=["project", "path", "string_prefix", "run"], name="attr_project_path_prefix"),
        ]

    def __str__(self):
        return f"{self.run_id}:{self.path}"

    @property
    def is_series(self) -> bool:
        return self.type in SERIES_TYPES


class ProjectField(models.Model):
    """Which paths (with which types) the runs of a project hold: the query engine's type
    source, the suggestions' and the column chooser's catalogue. Written on ingest."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="fields")
    path = models.CharField(max_length=512)
    type = models.CharField(max_length=16, choices=AttributeType.choices)
    first_seen = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "path", "type"], name="project_field_unique")]

    def __str__(self):
        return f"{self.project_id}:{self.path} ({self.type})"


class FloatPoint(models.Model):
    """A point of a float series. On TimescaleDB this table is a hypertable on ``step``."""

    pk = models.CompositePrimaryKey("series_id", "step")
    # No database FK: this is the hot table, points are deleted by runs.services
    # together with their series, and a FK check per inserted row costs ingest speed.
    series = models.ForeignKey(
        Attribute, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    step = models.BigIntegerField()
    timestamp = models.FloatField()
    value = models.FloatField(null=True)  # SQLite stores NaN as NULL; NULL reads back as NaN

    class Meta:
        managed = True


class StringPoint(models.Model):
    pk = models.CompositePrimaryKey("series_id", "step")
    series = models.ForeignKey(
        Attribute, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    step = models.BigIntegerField()
    timestamp = models.FloatField()
    value = models.TextField()


class _PointBlock(models.Model):
    """Consecutive points of one series, packed (see docs/series-blocks.md)."""

    pk = models.CompositePrimaryKey("series_id", "first_step")
    series = models.ForeignKey(
        Attribute, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    first_step = models.BigIntegerField()
    last_step = models.BigIntegerField()
    count = models.IntegerField()
    step_data = models.BinaryField()
    time_data = models.BinaryField()
    value_data = models.BinaryField()

    class Meta:
        abstract = True


class FloatBlock(_PointBlock):
    """Up to ``runs.blocks.block_points()`` consecutive points of a float series, packed (see
    docs/series-blocks.md). On TimescaleDB this table is a hypertable on ``first_step``."""


class StringBlock(_PointBlock):
    """Consecutive points of a string series, packed like :class:`FloatBlock`."""

    value_bytes = models.BigIntegerField()  # the values' UTF-8 size, for storage usage


class Blob(models.Model):
    """File contents, stored once per SHA-256 in blob storage."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    mime_type = models.CharField(max_length=200, default="application/octet-stream")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self):
        return self.sha256

    @property
    def storage_key(self) -> str:
        return f"blobs/{self.sha256[:2]}/{self.sha256[2:4]}/{self.sha256}"


class Upload(models.Model):
    """That a run uploaded a blob: what lets its batches attach the blob to fields."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="uploads")
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="uploads")
    name = models.CharField(max_length=255, blank=True)
    # What this uploader said the file is; the blob's own mime_type may come from another project.
    mime_type = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "blob"], name="upload_run_blob_unique")]


class FileEntry(models.Model):
    """A file of a ``file`` field (``relpath`` empty), a ``file_set`` field or a ``file_series`` step."""

    attribute = models.ForeignKey(Attribute, on_delete=models.CASCADE, related_name="files")
    relpath = models.CharField(max_length=1024, blank=True)
    step = models.BigIntegerField(null=True, blank=True)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="entries")
    name = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=200, default="application/octet-stream")
    size = models.BigIntegerField()
    timestamp = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["attribute_id", "step", "relpath"]
        constraints = [
            models.UniqueConstraint(
                fields=["attribute", "relpath"], condition=models.Q(step__isnull=True), name="file_relpath_unique"
            ),
            models.UniqueConstraint(
                fields=["attribute", "step"], condition=models.Q(step__isnull=False), name="file_step_unique"
            ),
        ]


class RunBatch(models.Model):
    """An applied ingestion batch; its key makes a retried batch a no-op."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="batches")
    stream = models.CharField(max_length=64)
    seq = models.BigIntegerField()
    op_count = models.PositiveIntegerField()
    applied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "stream", "seq"], name="batch_key_unique")]


class SavedView(models.Model):
    """A named run-table view of a project: columns, filter query, sort and grouping; private or shared."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="saved_views")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=100)
    shared = models.BooleanField(default=False)
    columns = models.JSONField(default=list)  # [{"path": str, "width": int | None}]
    query = models.TextField(blank=True)
    sort = models.CharField(max_length=520, blank=True)
    group_by = models.CharField(max_length=512, blank=True)
    # the project dashboard of this view: {"charts": [path, ...], "x": "step"|"time"|"relative",
    # "log": bool, "smooth": float, "color_by": "" (run) or a path, "open": "table"|"dashboard"}
    dashboard = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = SavedViewQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "owner", "name"], name="saved_view_name_unique")]

    def __str__(self):
        return f"{self.project_id}:{self.name}"


# --- background processing: roll-ups, blob previews, exports -----------------


class SeriesRollup(models.Model):
    """A closed bucket of a float series at one roll-up level (see ``runs.rollups``).

    Bucket ``bucket`` at level ``level`` covers steps ``[bucket * W, (bucket + 1) * W)``
    with ``W = rollups.width(level)``. Rows are written once, when the bucket can no
    longer change (the series has moved past its end); reads fill the open tail from
    raw points.
    """

    pk = models.CompositePrimaryKey("series_id", "level", "bucket")
    series = models.ForeignKey(
        Attribute, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    level = models.SmallIntegerField()
    bucket = models.BigIntegerField()
    min_value = models.FloatField(null=True)  # over non-NaN values; NULL when there are none
    max_value = models.FloatField(null=True)
    sum_value = models.FloatField(null=True)  # over finite values
    finite_count = models.BigIntegerField()
    count = models.BigIntegerField()
    first_step = models.BigIntegerField()
    last_step = models.BigIntegerField()
    last_value = models.FloatField(null=True)  # NULL reads back as NaN


class RollupCursor(models.Model):
    """How far a float series is rolled up: every level is complete below ``rolled_until``."""

    series = models.OneToOneField(
        Attribute, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    rolled_until = models.BigIntegerField(default=0)
    # A roll-up task is queued for this series: batches need not queue another.
    queued = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)


class BlobState(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    CORRUPT = "corrupt", "Corrupt"
    FAILED = "failed", "Failed"


class BlobInfo(models.Model):
    """What background processing learnt about a blob: verified hash, sniffed type, metadata."""

    blob = models.OneToOneField(Blob, on_delete=models.CASCADE, primary_key=True, related_name="info")
    state = models.CharField(max_length=10, choices=BlobState.choices, default=BlobState.PENDING)
    detected_mime_type = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Why no preview was made (over a size bound, too slow, unreadable); the original stays downloadable.
    preview_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)


class BlobPreview(models.Model):
    """A derived file next to a blob in storage: thumbnail, rendered HTML, poster frame."""

    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="previews")
    kind = models.CharField(max_length=20)  # thumbnail | html | poster
    storage_key = models.CharField(max_length=300)
    mime_type = models.CharField(max_length=200)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["blob", "kind"], name="blob_preview_kind_unique")]


class PendingUpload(models.Model):
    """A direct-to-store upload handed out as a presigned URL; completed or swept away."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="pending_uploads")
    staging_key = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    name = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=200, blank=True)
    multipart_id = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class ExportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Export(models.Model):
    """An archive (JSON + files) of a project or of one run, built by a task."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=10, choices=ExportState.choices, default=ExportState.QUEUED)
    progress = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    storage_key = models.CharField(max_length=300, blank=True)
    size = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ExportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]


class Erasure(models.Model):
    """A record that runs were deleted for good (GDPR erasure): what, by whom, when and why. Written by
    ``services.erase_runs`` only, never changed, and kept when the runs, the project or the actor go
    (unlike the audit log, it does not expire)."""

    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    actor_name = models.CharField(max_length=150, editable=False)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    project_label = models.CharField(max_length=200, editable=False)  # workspace/project at the time
    subject = models.CharField(max_length=300, editable=False)  # "run VIS-3"
    reason = models.TextField(editable=False)
    runs = models.JSONField(default=list, editable=False)  # [{uuid, id, name, created_at}]
    counts = models.JSONField(default=dict, editable=False)  # fields, series, points, files, blobs, bytes

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.subject} erased by {self.actor_name} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("an erasure record is never changed")
        super().save(*args, **kwargs)
