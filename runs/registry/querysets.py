from django.db import models


class RegisteredModelQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        """Models whose home project lets ``user`` perform ``action``."""
        from projects.permissions import scope_by_project

        return scope_by_project(self, user, action)

    def with_related(self):
        return self.select_related("project", "workspace", "project__workspace", "created_by")


class ModelVersionQuerySet(models.QuerySet):
    def for_user(self, user, action: str = "view"):
        from projects.permissions import scope_by_project

        return scope_by_project(self, user, action, field="model__project")

    def with_related(self):
        return self.select_related(
            "model",
            "model__project",
            "model__project__workspace",
            "run",
            "run__project",
            "created_by",
            "stage_changed_by",
        )


KEY_METRIC_LIMIT = 12
_HIDDEN_PREFIXES = ("sys/", "monitoring/", "environment/", "source_code/", "import/")


def key_metrics(run_ids, limit: int = KEY_METRIC_LIMIT) -> dict[int, list[tuple[str, float]]]:
    """For each run of ``run_ids``: its float series (their last values) then its numeric fields,
    ``(path, value)`` sorted by path, at most ``limit``. One query for all runs."""
    from django.db.models import Q

    from ..models import Attribute, AttributeType

    hidden = Q()
    for prefix in _HIDDEN_PREFIXES:
        hidden |= Q(path__startswith=prefix)
    rows = (
        Attribute.objects.filter(
            run_id__in=list(run_ids),
            type__in=[AttributeType.FLOAT_SERIES, AttributeType.FLOAT, AttributeType.INT],
        )
        .exclude(hidden)
        .values_list("run_id", "path", "type", "float_value", "int_value")
    )
    series: dict[int, list[tuple[str, float]]] = {}
    scalars: dict[int, list[tuple[str, float]]] = {}
    for run_id, path, kind, float_value, int_value in rows:
        value = int_value if kind == AttributeType.INT else float_value
        if value is None:
            continue
        target = series if kind == AttributeType.FLOAT_SERIES else scalars
        target.setdefault(run_id, []).append((path, value))
    return {
        run_id: (sorted(series.get(run_id, [])) + sorted(scalars.get(run_id, [])))[:limit]
        for run_id in set(series) | set(scalars)
    }
