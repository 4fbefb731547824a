"""A project's webhooks and the log of what was delivered to them."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models import Project

# The events a webhook may subscribe to (``ping`` is sent by "Test" only, to one webhook).
RUN_CREATED = "run.created"
RUN_FINISHED = "run.finished"
RUN_FAILED = "run.failed"
RUN_CRASHED = "run.crashed"
RUN_TAG_ADDED = "run.tag_added"
RUN_TAG_REMOVED = "run.tag_removed"
RUN_QUERY_MATCHED = "run.query_matched"
MODEL_STAGE_CHANGED = "model_version.stage_changed"
PING = "ping"

EVENT_CHOICES = [
    (RUN_CREATED, "Run created"),
    (RUN_FINISHED, "Run finished"),
    (RUN_FAILED, "Run failed"),
    (RUN_CRASHED, "Run crashed"),
    (RUN_TAG_ADDED, "Tag added"),
    (RUN_TAG_REMOVED, "Tag removed"),
    (RUN_QUERY_MATCHED, "A field changed on a run matching the query"),
    (MODEL_STAGE_CHANGED, "Model version stage changed"),
]
EVENTS = frozenset(name for name, _ in EVENT_CHOICES)


class Webhook(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=200)
    events = models.JSONField(default=list)  # names from EVENTS
    query = models.TextField(blank=True)  # for run.query_matched, in the run table's query language
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        # the one look-up per write: "does this project have an active webhook?"
        indexes = [models.Index(fields=["project", "active"], name="webhook_project_active")]

    def __str__(self):
        return f"{self.project} → {self.url}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event sent to one webhook: its payload (sent byte for byte on every attempt, and on a
    redelivery) and the outcome of its latest attempt; each attempt is a ``DeliveryAttempt``."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.TextField()  # the JSON body, exactly as signed and sent
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)  # the first RESPONSE_EXCERPT bytes of the answer
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_created")]

    def __str__(self):
        return f"{self.event} {self.delivery_id}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    succeeded = models.BooleanField(default=False)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_number")]
