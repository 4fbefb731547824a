"""Numbers about projects that other apps own (how many runs, when last active).

``projects`` knows nothing of runs: the app that owns the rows registers an
annotator here from its ``AppConfig.ready()``, and the project pages call
``annotate`` to get the figures in the same query as the projects.
"""

from collections.abc import Callable

from django.db.models import QuerySet

Annotator = Callable[[QuerySet], QuerySet]

_annotators: list[Annotator] = []


def register(annotator: Annotator) -> None:
    """Add an annotator: it takes a Project queryset and returns it annotated."""
    if annotator not in _annotators:
        _annotators.append(annotator)


def annotate(projects: QuerySet) -> QuerySet:
    """The projects annotated by every registered app (``live_runs``, ``last_activity`` from runs)."""
    for annotator in _annotators:
        projects = annotator(projects)
    return projects
