"""Emitting webhook events. Each ``emit_*`` runs inside the write's transaction and only registers an
``on_commit`` callback (a rolled-back write announces nothing); the callback, after the commit, asks
once whether the project has an active webhook (one indexed query, ``webhook_project_active``;
a "none" answer is remembered for :data:`NO_HOOKS_SECONDS` by the process) and does nothing more
when it has none. Otherwise it records a ``Delivery`` per subscribed webhook and
queues its task.

Events and their ``data``:

* ``run.created``        ``{}``
* ``run.finished`` / ``run.failed``  ``{"state"}``, when a write sets that final state
* ``run.crashed``        ``{}``, when the crash sweep marks a silent run crashed
* ``run.tag_added`` / ``run.tag_removed``  ``{"tags": [...]}``: the tags this write added / removed
* ``run.query_matched``  ``{"query", "changed": [paths]}``: sent when a write changes a field that the
  webhook's query names (e.g. ``eval/acc`` in ``eval/acc > 0.9``; a series counts as changed when
  points are appended) and the run matches the query after that write. So it fires when a write
  makes the run match, and again on every later write of a named field while it still matches;
  writes of other fields never fire it. A webhook without a query never receives it.
* ``model_version.stage_changed``  ``{"model", "version", "from_stage", "to_stage", ...}``: emitted by
  :func:`emit_model_stage_changed` (for the model registry).
"""

import logging
import time
from collections.abc import Iterable

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import models as m

logger = logging.getLogger(__name__)

# A project found without an active webhook is not asked again for this long by this process: every
# batch and every run created ends in that question. A webhook saved or deleted in this process is
# seen at once; one added through another process starts receiving events within these seconds.
NO_HOOKS_SECONDS = 2.0
_NO_HOOKS_MAX = 10_000  # projects remembered per process before the memory starts over
_without_hooks: dict[int, float] = {}  # project id -> monotonic time until which it has none


def emit_run_event(run, event: str, data: dict | None = None) -> None:
    """Announce ``event`` about ``run`` to its project's webhooks once the transaction commits."""
    emit_run_events(run, [(event, data or {})])


def emit_run_events(run, events: list[tuple[str, dict]], changed_paths: Iterable[str] = ()) -> None:
    """Announce ``events`` (``(name, data)`` pairs) about ``run``; with ``changed_paths``, also
    ``run.query_matched`` to webhooks whose query names one of them and matches the run."""
    changed = frozenset(changed_paths)
    if not events and not changed:
        return
    transaction.on_commit(lambda: _dispatch(run, events, changed), robust=True)


def emit_runs_event(run_ids: list[int], event: str) -> None:
    """Announce ``event`` about each run in ``run_ids`` (the crash sweep): one webhook look-up for all."""
    if run_ids:
        transaction.on_commit(lambda: _dispatch_many(run_ids, event), robust=True)


def emit_model_stage_changed(
    project, *, model: str, version: int, from_stage: str, to_stage: str, run=None, by=None, **details
) -> None:
    """Announce that version ``version`` of model ``model`` (registered in ``project``) moved from
    ``from_stage`` to ``to_stage`` (event ``model_version.stage_changed``). For the model registry's
    service layer to call inside its write transaction; ``run`` is the run the version came from."""
    data = {
        "model": model,
        "version": version,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "by": by.get_username() if by is not None else None,
        **details,
    }
    transaction.on_commit(lambda: _deliver_event(project, m.MODEL_STAGE_CHANGED, run, data), robust=True)


# --- after the commit ------------------------------------------------------------


def _hooks(project_id: int) -> list[m.Webhook]:
    until = _without_hooks.get(project_id)
    if until is not None and time.monotonic() < until:
        return []
    hooks = list(m.Webhook.objects.filter(project_id=project_id, active=True))
    if hooks:
        _without_hooks.pop(project_id, None)
    else:
        if len(_without_hooks) >= _NO_HOOKS_MAX:
            _without_hooks.clear()
        _without_hooks[project_id] = time.monotonic() + NO_HOOKS_SECONDS
    return hooks


@receiver(post_save, sender=m.Webhook, dispatch_uid="webhooks.forget_no_hooks.save")
@receiver(post_delete, sender=m.Webhook, dispatch_uid="webhooks.forget_no_hooks.delete")
def _forget_no_hooks(sender, instance, **kwargs) -> None:
    _without_hooks.pop(instance.project_id, None)


def _dispatch(run, events: list[tuple[str, dict]], changed: frozenset[str]) -> None:
    hooks = _hooks(run.project_id)
    if not hooks:
        return
    from . import services

    for hook in hooks:
        for event, data in events:
            if event in hook.events:
                services.enqueue_delivery(hook, event, run=run, data=data)
        if changed and m.RUN_QUERY_MATCHED in hook.events and hook.query.strip():
            named = changed & services.query_paths(hook.query)
            if named and services.run_matches(run, hook.query):
                services.enqueue_delivery(
                    hook, m.RUN_QUERY_MATCHED, run=run, data={"query": hook.query, "changed": sorted(named)}
                )


def _dispatch_many(run_ids: list[int], event: str) -> None:
    from runs.models import Run

    from . import services

    runs = list(Run.objects.filter(pk__in=run_ids).select_related("project__workspace"))
    hooks = m.Webhook.objects.filter(project_id__in={r.project_id for r in runs}, active=True)
    by_project: dict[int, list[m.Webhook]] = {}
    for hook in hooks:
        if event in hook.events:
            by_project.setdefault(hook.project_id, []).append(hook)
    for run in runs:
        for hook in by_project.get(run.project_id, []):
            services.enqueue_delivery(hook, event, run=run, data={})


def _deliver_event(project, event: str, run, data: dict) -> None:
    from . import services

    for hook in _hooks(project.pk):
        if event in hook.events:
            services.enqueue_delivery(hook, event, run=run, data=data, project=project)
