"""The lineage chain as it was before the permission look-up and the row loading were cut (commit
8cf35a9's ``runs.artifacts.queries.chain``), kept verbatim so ``bench/lineage.py`` times the old and
the new one side by side, in the same process, under the same load."""

from django.db import connection

from projects import permissions
from runs.artifacts.models import ArtifactVersion, Role, RunArtifact
from runs.artifacts.queries import DEFAULT_DEPTH, MAX_CHAIN_RUNS, MAX_DEPTH, MAX_LINKS, Chain
from runs.models import Run

LINK_FIELDS = (
    "path",
    "role",
    "run_id",
    "project_id",
    "version_id",
    "artifact_id",
    "run__uuid",
    "run__number",
    "run__name",
    "run__state",
    "run__created_at",
    "run__project__slug",
    "run__project__key",
    "run__project__workspace__slug",
    "version__hash",
    "version__kind",
    "version__size",
    "version__file_count",
    "version__location",
    "version__artifact_id",
    "artifact__name",
)


def _link_rows(links):
    """Links with what is shown of them (never a version's file list), newest run first."""
    return (
        links.select_related("run", "run__project", "run__project__workspace", "version", "artifact")
        .only(*LINK_FIELDS)
        .order_by("-run__created_at", "-run_id", "path")
    )


def _reachable(run, depth: int, project_ids: list[int] | None) -> list[tuple[int, int]]:
    """``(run id, level)`` of ``run`` and the live runs of ``project_ids`` (None: all) that produced
    its inputs, their inputs' producers, ... up to ``depth`` levels, nearest first: one recursive
    query (the same SQL on PostgreSQL and SQLite), each step answered from the indexes on the
    link's ``(run, role)``, the version's hash and the link's ``(version, role)``."""
    links, versions, runs = RunArtifact._meta.db_table, ArtifactVersion._meta.db_table, Run._meta.db_table
    visible, params = "", [run.pk, Role.INPUT.value, Role.OUTPUT.value, depth]
    if project_ids is not None:
        visible = f" AND p.project_id IN ({', '.join(['%s'] * len(project_ids))})" if project_ids else " AND 1 = 0"
        params += project_ids
    sql = f"""
        WITH RECURSIVE chain(run_id, level) AS (
            SELECT CAST(%s AS BIGINT), CAST(0 AS INTEGER)
            UNION
            SELECT p.run_id, c.level + 1
            FROM chain c
            JOIN {links} i ON i.run_id = c.run_id AND i.role = %s
            JOIN {versions} iv ON iv.id = i.version_id
            JOIN {versions} pv ON pv.hash = iv.hash
            JOIN {links} p ON p.version_id = pv.id AND p.role = %s
            JOIN {runs} r ON r.id = p.run_id AND r.deleted_at IS NULL
            WHERE c.level < %s{visible}
        )
        SELECT run_id, MIN(level) AS nearest FROM chain GROUP BY run_id ORDER BY nearest, run_id DESC LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, MAX_CHAIN_RUNS + 1])
        return [(int(run_id), int(level)) for run_id, level in cursor.fetchall()]


def chain(user, run, depth: int = DEFAULT_DEPTH) -> Chain:
    """From ``run`` back to its data: its inputs, the visible runs that produced those versions
    (matched by content hash, in any project the caller may view), their inputs, ... at most
    ``depth`` levels and ``MAX_CHAIN_RUNS`` runs. A constant number of queries: the visible
    projects, the recursive walk, the runs, their inputs and those inputs' producers."""
    depth = max(1, min(depth, MAX_DEPTH))
    project_ids = (
        None
        if getattr(user, "is_superuser", False)
        else list(permissions.visible_project_ids(user).values_list("pk", flat=True))
    )
    reached = _reachable(run, depth, project_ids)
    result = Chain(root=run.pk, runs={run.pk: run})
    result.truncated = len(reached) > MAX_CHAIN_RUNS
    reached = reached[:MAX_CHAIN_RUNS]
    level = dict(reached)
    result.depth = max(level.values(), default=0)
    walked = [pk for pk, at in reached if at < depth]
    inputs = list(
        RunArtifact.objects.filter(run_id__in=walked, role=Role.INPUT)
        .select_related("version", "artifact")
        .defer("version__files", "version__metadata")
        .order_by("run_id", "path")[:MAX_LINKS]
    )
    for link in inputs:
        result.inputs[link.run_id].append(link)
    hashes = {link.version.hash for link in inputs}
    found: dict[int, Run] = {}
    if hashes:
        links = RunArtifact.objects.filter(run__deleted_at__isnull=True, role=Role.OUTPUT, version__hash__in=hashes)
        if project_ids is not None:
            links = links.filter(project_id__in=project_ids)
        producers = list(_link_rows(links)[: MAX_LINKS + 1])
        result.truncated = result.truncated or len(producers) > MAX_LINKS
        for link in producers[:MAX_LINKS]:
            result.producers[link.version.hash].append(link)
            found.setdefault(link.run_id, link.run)
    # every run of the chain but the root produced one of the inputs: its row came with that link
    for pk, _ in reached:
        if pk != run.pk and pk in found:
            result.runs[pk] = found[pk]
    if level and max(level.values()) >= depth:
        result.truncated = True  # the walk stopped at the depth; there may be more
    return result
