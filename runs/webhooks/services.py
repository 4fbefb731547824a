"""Every write of webhooks and their delivery log: saving webhooks (``manage`` on the project),
recording deliveries, attempting them, redelivering."""

import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from projects import audit, permissions
from projects.models import Project

from . import network
from .models import EVENTS, PING, Delivery, DeliveryAttempt, DeliveryStatus, Webhook

SIGNATURE_HEADER = "X-Runstore-Signature-256"
EVENT_HEADER = "X-Runstore-Event"
DELIVERY_HEADER = "X-Runstore-Delivery"
TIMESTAMP_HEADER = "X-Runstore-Timestamp"
FINAL_4XX_RETRYABLE = {408, 429}  # other 4xx answers are final


# --- webhooks ---------------------------------------------------------------------


def _clean(url: str, events, query: str, project: Project) -> tuple[str, list[str], str]:
    url = (url or "").strip()
    try:
        network.resolve(url)
    except network.UnsafeURL as exc:
        raise ValidationError({"url": f"url: {exc}"}) from None
    events = sorted(set(events or []))
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ValidationError({"events": f"events: unknown event {unknown[0]!r}"})
    if not events:
        raise ValidationError({"events": "events: choose at least one event"})
    query = (query or "").strip()
    if query:
        from runs.query import QueryError, QuerySyntaxError, parse
        from runs.query.compiler import Compiler

        try:
            Compiler(project).compile(parse(query))
        except (QuerySyntaxError, QueryError) as exc:
            raise ValidationError({"query": f"query: {exc}"}) from None
    return url, events, query


def create_webhook(user, project: Project, *, url: str, events, query: str = "", secret: str = "", active=True):
    """A new webhook of ``project`` (its secret generated when none is given)."""
    permissions.require(user, "manage", project)
    url, events, query = _clean(url, events, query, project)
    with transaction.atomic():
        hook = Webhook.objects.create(
            project=project,
            url=url,
            events=events,
            query=query,
            secret=secret or secrets.token_urlsafe(32),
            active=active,
            created_by=user if user.is_authenticated else None,
        )
        audit.record("webhook.created", actor=user, project=project, target=hook, details={"url": url})
    return hook


def update_webhook(user, hook: Webhook, *, url: str, events, query: str = "", secret: str = "", active=True):
    """Change a webhook; an empty ``secret`` keeps the current one."""
    permissions.require(user, "manage", hook.project)
    hook.url, hook.events, hook.query = _clean(url, events, query, hook.project)
    hook.active = active
    if secret:
        hook.secret = secret
    hook.updated_at = timezone.now()
    with transaction.atomic():
        hook.save()
        audit.record("webhook.changed", actor=user, project=hook.project, target=hook, details={"url": hook.url})
    return hook


def delete_webhook(user, hook: Webhook) -> None:
    permissions.require(user, "manage", hook.project)
    with transaction.atomic():
        audit.record("webhook.deleted", actor=user, project=hook.project, target=str(hook), details={"url": hook.url})
        hook.delete()


def ping(user, hook: Webhook) -> Delivery:
    """Send a ``ping`` event to ``hook`` now (once, no retries), whatever events it subscribes to."""
    permissions.require(user, "manage", hook.project)
    return enqueue_delivery(hook, PING, run=None, data={"webhook": hook.pk}, retries=False)


def redeliver(user, delivery: Delivery) -> Delivery:
    """One more attempt of ``delivery``: the same payload, the same delivery id (no automatic retries)."""
    permissions.require(user, "manage", delivery.webhook.project)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now())
    _queue(delivery.pk, retries=False)
    delivery.refresh_from_db()
    return delivery


# --- deliveries ---------------------------------------------------------------------


def query_paths(query: str) -> set[str]:
    from runs.query import parse
    from runs.query.compiler import paths_of

    try:
        return paths_of(parse(query))
    except ValueError:
        return set()


def run_matches(run, query: str) -> bool:
    from runs.models import Run
    from runs.query import parse
    from runs.query.compiler import Compiler

    try:
        condition = Compiler(run.project).compile(parse(query))
    except ValueError:
        return False
    return Run.objects.filter(pk=run.pk, deleted_at__isnull=True).filter(condition).exists()


def _run_json(run) -> dict:
    return {
        "id": run.human_id,
        "uuid": str(run.uuid),
        "name": run.name,
        "state": run.state,
        "owner": run.owner.get_username() if run.owner_id else None,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def build_payload(delivery_id, event: str, created_at, project: Project, run, data: dict) -> str:
    body = {
        "id": str(delivery_id),
        "event": event,
        "created_at": created_at,
        "project": {
            "id": project.pk,
            "workspace": project.workspace.slug,
            "slug": project.slug,
            "name": project.full_name,
            "key": project.key,
        },
        "run": _run_json(run) if run is not None else None,
        "data": data,
    }
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True)


def enqueue_delivery(hook: Webhook, event: str, *, run, data: dict, project=None, retries=True) -> Delivery:
    """Record a delivery of ``event`` to ``hook`` and queue its first attempt (after the commit)."""
    delivery = Delivery(webhook=hook, event=event)
    delivery.payload = build_payload(
        delivery.delivery_id, event, delivery.created_at, project or hook.project, run, data
    )
    delivery.next_attempt_at = delivery.created_at
    delivery.save()
    _queue(delivery.pk, retries=retries)
    return delivery


def _queue(pk: int, *, retries: bool, countdown: float = 0) -> None:
    from .tasks import deliver

    transaction.on_commit(lambda: deliver.apply_async((pk, retries), countdown=countdown), robust=True)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: RUNSTORE_WEBHOOK_RETRY_DELAY doubled per attempt, ±20 % jitter."""
    return settings.RUNSTORE_WEBHOOK_RETRY_DELAY * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)


def attempt_delivery(pk: int, *, retries: bool = True) -> str:
    """One attempt of delivery ``pk`` (the task's work): POST, record the attempt, schedule the next
    one while attempts remain and the answer may change (a network error, a timeout, 408, 429, 5xx)."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=pk).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return "skipped"
    hook = delivery.webhook
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Runstore-Webhooks/1",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.delivery_id),
        TIMESTAMP_HEADER: str(int(time.time())),
        SIGNATURE_HEADER: sign(hook.secret, body),
    }
    started = timezone.now()
    final = False
    try:
        response = network.post(hook.url, body, headers, timeout=settings.RUNSTORE_WEBHOOK_TIMEOUT)
    except network.UnsafeURL as exc:
        response = network.Response(None, 0, error=f"refused: {exc}")
        final = True
    code = response.status
    succeeded = code is not None and 200 <= code < 300
    if code is not None and not succeeded:
        response.error = response.error or f"answered HTTP {code}"
        if 300 <= code < 400:
            response.error += " (redirects are not followed)"
            final = True
        elif 400 <= code < 500 and code not in FINAL_4XX_RETRYABLE:
            final = True
    with transaction.atomic():
        # numbered under the row's lock: a redelivery running beside a retry gets the next number
        number = Delivery.objects.select_for_update().values_list("attempts", flat=True).get(pk=pk) + 1
        more = retries and not succeeded and not final and number < settings.RUNSTORE_WEBHOOK_MAX_ATTEMPTS
        delay = retry_delay(number) if more else 0
        status = DeliveryStatus.SUCCEEDED if succeeded else DeliveryStatus.PENDING if more else DeliveryStatus.FAILED
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started,
            succeeded=succeeded,
            response_code=code,
            latency_ms=response.latency_ms,
            response_excerpt=response.excerpt,
            error=response.error,
        )
        Delivery.objects.filter(pk=pk).update(
            attempts=number,
            status=status,
            response_code=code,
            latency_ms=response.latency_ms,
            response_excerpt=response.excerpt,
            error=response.error,
            last_attempt_at=started,
            next_attempt_at=started + timedelta(seconds=delay) if more else None,
        )
        if more:
            _queue(pk, retries=True, countdown=delay)
    return status
