"""Read-side of artifact versions, every look-up scoped by the permission module.

A version (or a name) is known to a caller only through links (``RunArtifact``) of runs in projects
the caller may view: a hash used only in other projects answers exactly as an unknown hash does.
Each query costs a constant number of statements, the lineage chain too (three, whatever its length).
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection

from projects import permissions
from projects.models import Project, Workspace

from ..models import Run
from .models import Artifact, ArtifactVersion, Role, RunArtifact

MAX_DEPTH = 100
DEFAULT_DEPTH = 5
MAX_CHAIN_RUNS = 500
MAX_LINKS = 1000


def visible_links(user, *, resolved: bool = False):
    """Links of live runs in projects ``user`` may view. ``resolved``: the visible projects are read
    once, here, and the queryset filters on their keys (for a caller that queries it many times)."""
    links = RunArtifact.objects.filter(run__deleted_at__isnull=True)
    if resolved:
        project_ids = permissions.readable_project_ids(user)
        return links if project_ids is None else links.filter(project_id__in=project_ids)
    return permissions.scope_by_project(links, user, "view")


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


def run_links(run) -> list[RunArtifact]:
    """The versions ``run`` consumed and produced (the caller checked ``run`` is visible)."""
    links = RunArtifact.objects.filter(run=run).select_related("version", "artifact").defer("version__files")
    return list(links.order_by("role", "path"))


def version_links(user, digest: str, role: str | None = None) -> list[RunArtifact]:
    """Visible links to the versions of hash ``digest`` (any workspace), newest run first."""
    links = visible_links(user, resolved=True).filter(version__hash=digest)
    if role:
        links = links.filter(role=role)
    return list(_link_rows(links)[:MAX_LINKS])


def visible_version(user, digest: str) -> ArtifactVersion | None:
    """The version of hash ``digest`` in a workspace where a visible run links it, or None."""
    link = visible_links(user).filter(version__hash=digest).select_related("version", "version__artifact").first()
    return link.version if link else None


def artifact_versions(user, workspace, name: str):
    """A named artifact of ``workspace`` and its versions that visible runs link, newest first; None when
    no visible run links any of its versions (the name then does not exist for the caller)."""
    artifact = Artifact.objects.filter(workspace=workspace, name=name).first()
    if artifact is None:
        return None, []
    links = visible_links(user).filter(version__artifact=artifact)
    version_ids = links.values("version_id")
    versions = list(ArtifactVersion.objects.filter(pk__in=version_ids).order_by("-first_seen", "-id"))
    if not versions:
        return None, []
    by_version: dict[int, list[RunArtifact]] = defaultdict(list)
    for link in _link_rows(links)[:MAX_LINKS]:
        by_version[link.version_id].append(link)
    for version in versions:
        setattr(version, "visible_links", by_version.get(version.pk, []))  # noqa: B010  not a model field
    return artifact, versions


def diff(old: ArtifactVersion, new: ArtifactVersion) -> dict:
    """Files added, removed and changed (same path, other hash or size) from ``old`` to ``new``."""
    before = {row[0]: row for row in old.files}
    after = {row[0]: row for row in new.files}
    return {
        "added": [after[p] for p in sorted(after.keys() - before.keys())],
        "removed": [before[p] for p in sorted(before.keys() - after.keys())],
        "changed": [
            {"path": p, "old": before[p], "new": after[p]}
            for p in sorted(before.keys() & after.keys())
            if before[p][1:] != after[p][1:]
        ],
    }


@dataclass
class Chain:
    """The lineage of a run: ``runs`` (pk → run) and ``edges`` (producer run pk, version, consumer run pk)."""

    root: int
    runs: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=lambda: defaultdict(list))  # run pk -> [RunArtifact]
    producers: dict = field(default_factory=lambda: defaultdict(list))  # version hash -> [RunArtifact]
    depth: int = 0
    truncated: bool = False


def _reachable(run, depth: int, project_ids: list[int] | None) -> list[tuple[int, int]]:
    """``(run id, level)`` of ``run`` and the live runs of ``project_ids`` (None: all) that produced
    its inputs, their inputs' producers, ... up to ``depth`` levels, nearest first: one recursive
    query (the same SQL on PostgreSQL and SQLite), each step answered from the indexes on the
    link's ``(run, role)``, the version's hash and the link's ``(version, role)``. Trashed runs are
    left out by an anti-join rather than a join: joined, the runs table (its statistics not yet
    gathered) could become the step's driving table, scanned once per level (50 levels: 6x slower)."""
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
            WHERE c.level < %s{visible}
              AND NOT EXISTS (SELECT 1 FROM {runs} r WHERE r.id = p.run_id AND r.deleted_at IS NOT NULL)
        )
        SELECT run_id, MIN(level) AS nearest FROM chain GROUP BY run_id ORDER BY nearest, run_id DESC LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, MAX_CHAIN_RUNS + 1])
        return [(int(run_id), int(level)) for run_id, level in cursor.fetchall()]


def chain(user, run, depth: int = DEFAULT_DEPTH) -> Chain:
    """From ``run`` back to its data: its inputs, the visible runs that produced those versions
    (matched by content hash, in any project the caller may view), their inputs, ... at most
    ``depth`` levels and ``MAX_CHAIN_RUNS`` runs. Four statements whatever the length: the readable
    projects (one prepared statement of the permission module, no per-run check), the recursive
    walk, the walked runs' inputs, and the visible runs that produced those inputs; the rows are read
    as tuples of what is shown and made into instances directly, without building a queryset."""
    depth = max(1, min(depth, MAX_DEPTH))
    project_ids = permissions.readable_project_ids(user)
    reached = _reachable(run, depth, project_ids)
    result = Chain(root=run.pk, runs={run.pk: run})
    result.truncated = len(reached) > MAX_CHAIN_RUNS
    reached = reached[:MAX_CHAIN_RUNS]
    level = dict(reached)
    result.depth = max(level.values(), default=0)
    walked = [pk for pk, at in reached if at < depth]
    found: dict[int, Run] = {}
    if walked:
        inputs = _input_links(walked)
        for link in inputs:
            result.inputs[link.run_id].append(link)
        producers = _producer_links(sorted({link.version.hash for link in inputs}), project_ids)
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


_COLUMNS: dict = {}


def _loaded(model, **values):
    """An instance of ``model`` as if loaded from the database with only ``values`` (the rest deferred,
    read on first use); ``Model.from_db`` wants the values in the model's field order."""
    order = _COLUMNS.get(model)
    if order is None:
        order = _COLUMNS[model] = [f.attname for f in model._meta.concrete_fields]
    names = [name for name in order if name in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))  # SQLite keeps it as text


def _in(values) -> str:
    return ", ".join(["%s"] * len(values))


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _version(version_id, digest, kind, size, file_count, location) -> ArtifactVersion:
    return _loaded(
        ArtifactVersion, id=version_id, hash=digest, kind=kind, size=size, file_count=file_count, location=location
    )


def _link(pk, run_id, project_id, artifact_id, role: Role, path: str, version: list) -> RunArtifact:
    """A link built from its selected columns, ``version`` being the columns :func:`_version` takes."""
    link = _loaded(
        RunArtifact,
        id=pk,
        run_id=run_id,
        project_id=project_id,
        version_id=version[0],
        artifact_id=artifact_id,
        role=role.value,
        path=path,
    )
    link.version = _version(*version)
    return link


def _input_links(walked: list[int]) -> list[RunArtifact]:
    """The input links of the ``walked`` runs, by run then path, each with its version (never its
    file list) and name: at most ``MAX_LINKS``."""
    links, versions, names = RunArtifact._meta.db_table, ArtifactVersion._meta.db_table, Artifact._meta.db_table
    rows = _fetch(
        f"SELECT i.id, i.run_id, i.project_id, i.path, i.artifact_id, a.name, "
        f"v.id, v.hash, v.kind, v.size, v.file_count, v.location "
        f"FROM {links} i JOIN {versions} v ON v.id = i.version_id LEFT JOIN {names} a ON a.id = i.artifact_id "
        f"WHERE i.run_id IN ({_in(walked)}) AND i.role = %s ORDER BY i.run_id, i.path LIMIT %s",
        [*walked, Role.INPUT.value, MAX_LINKS],
    )
    out = []
    for pk, run_id, project_id, path, artifact_id, name, *version in rows:
        link = _link(pk, run_id, project_id, artifact_id, Role.INPUT, path, version)
        link.artifact = _loaded(Artifact, id=artifact_id, name=name) if artifact_id is not None else None
        out.append(link)
    return out


def _producer_links(hashes: list[str], project_ids: list[int] | None) -> list[RunArtifact]:
    """The output links of live runs of ``project_ids`` (None: all) holding one of ``hashes``, newest
    run first, each with its run, the run's project and workspace: at most ``MAX_LINKS + 1`` (one
    more says the list was cut)."""
    if not hashes or project_ids == []:
        return []
    links, versions, runs = RunArtifact._meta.db_table, ArtifactVersion._meta.db_table, Run._meta.db_table
    projects, workspaces = Project._meta.db_table, Workspace._meta.db_table
    visible = f" AND p.project_id IN ({_in(project_ids)})" if project_ids is not None else ""
    rows = _fetch(
        f"SELECT p.id, p.path, p.artifact_id, r.id, r.uuid, r.number, r.name, r.state, "
        f"pr.id, pr.slug, pr.key, w.id, w.slug, v.id, v.hash, v.kind, v.size, v.file_count, v.location "
        f"FROM {versions} v JOIN {links} p ON p.version_id = v.id AND p.role = %s "
        f"JOIN {runs} r ON r.id = p.run_id AND r.deleted_at IS NULL "
        f"JOIN {projects} pr ON pr.id = r.project_id JOIN {workspaces} w ON w.id = pr.workspace_id "
        f"WHERE v.hash IN ({_in(hashes)}){visible} ORDER BY r.created_at DESC, r.id DESC, p.path LIMIT %s",
        [Role.OUTPUT.value, *hashes, *(project_ids or []), MAX_LINKS + 1],
    )
    places: dict[int, Project] = {}
    made: dict[int, Run] = {}
    out = []
    for (
        pk,
        path,
        artifact_id,
        run_id,
        run_uuid,
        number,
        name,
        state,
        project_id,
        slug,
        key,
        ws_id,
        ws_slug,
        *version,
    ) in rows:
        producer = made.get(run_id)
        if producer is None:
            project = places.get(project_id)
            if project is None:
                project = places[project_id] = _loaded(Project, id=project_id, slug=slug, key=key, workspace_id=ws_id)
                project.workspace = _loaded(Workspace, id=ws_id, slug=ws_slug)
            producer = made[run_id] = _loaded(
                Run, id=run_id, uuid=_uuid(run_uuid), number=number, name=name, state=state, project_id=project_id
            )
            producer.project = project
        link = _link(pk, run_id, project_id, artifact_id, Role.OUTPUT, path, version)
        link.run = producer
        out.append(link)
    return out


def link_json(link: RunArtifact, *, with_run: bool = False) -> dict:
    version = link.version
    out: dict[str, object] = {
        "path": link.path,
        "role": link.role,
        "hash": version.hash,
        "name": link.artifact.name if link.artifact_id and link.artifact else None,
        "kind": version.kind,
        "size": version.size,
        "file_count": version.file_count,
        "location": version.location,
    }
    if with_run:
        out["run"] = run_json(link.run)
    return out


def run_json(run) -> dict:
    project = run.project
    return {
        "id": run.human_id,
        "uuid": str(run.uuid),
        "name": run.name,
        "state": run.state,
        "workspace": project.workspace.slug,
        "project": project.slug,
    }


def chain_json(result: Chain) -> dict:
    return {
        "run": result.runs[result.root].human_id,
        "depth": result.depth,
        "truncated": result.truncated,
        "runs": [
            {
                **run_json(run),
                "inputs": [
                    {
                        **link_json(link),
                        "produced_by": [
                            {
                                "run": p.run.human_id,
                                "workspace": p.run.project.workspace.slug,
                                "project": p.run.project.slug,
                                "path": p.path,
                            }
                            for p in result.producers.get(link.version.hash, [])
                        ],
                    }
                    for link in result.inputs.get(pk, [])
                ],
            }
            for pk, run in result.runs.items()
        ],
    }


GRAPH_NODES = 12  # per column of the run page's graph


@dataclass
class GraphColumn:
    nodes: list = field(default_factory=list)
    more: int = 0


def run_graph(user, run) -> dict:
    """One level each side of ``run``: its inputs with the visible runs that produced them, its
    outputs with the visible runs that consumed them. Three queries."""
    own = run_links(run)
    inputs = [link for link in own if link.role == Role.INPUT]
    outputs = [link for link in own if link.role == Role.OUTPUT]
    links = visible_links(user).exclude(run=run)
    producers: dict[str, list[RunArtifact]] = defaultdict(list)
    consumers: dict[str, list[RunArtifact]] = defaultdict(list)
    if inputs:
        rows = links.filter(role=Role.OUTPUT, version__hash__in={link.version.hash for link in inputs})
        for link in _link_rows(rows)[:MAX_LINKS]:
            producers[link.version.hash].append(link)
    if outputs:
        rows = links.filter(role=Role.INPUT, version__hash__in={link.version.hash for link in outputs})
        for link in _link_rows(rows)[:MAX_LINKS]:
            consumers[link.version.hash].append(link)
    return {"inputs": inputs, "outputs": outputs, "producers": producers, "consumers": consumers}
