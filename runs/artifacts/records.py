"""A record of an artifact version's whole lineage for an audit, as one ZIP archive: the version (its file
list), the runs that consumed and produced it, and the chain back from each producer to its data
(``queries.chain``), each run with its fields, series, files, lineage and audit entries
(``runs.exports``). Only runs of projects where the user holds the ``export`` action are written;
the manifest lists the visible runs left out and why; runs the user cannot see are never named."""

import os
import tempfile
import zipfile

from django.http import FileResponse, Http404
from django.utils import timezone
from django.views import View

from projects import audit, permissions
from projects.models import Workspace
from tracker.ui import ScopedUIViewMixin

from .. import exports
from . import queries

MAX_RUNS = 200


class _Closing:
    """A temporary file removed when the response is closed."""

    def __init__(self, path: str):
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def read(self, *args):
        return self.file.read(*args)

    def close(self):
        self.file.close()
        os.unlink(self.path)


def build(user, workspace: str, digest: str) -> tuple[_Closing, str]:
    """The lineage archive of the version ``digest`` of ``workspace`` for ``user`` (404 when they see
    no run linking it), audited as ``export.lineage``; an open temporary file removed once closed, and
    its download name. The UI's and the API's download both come here."""
    ws = Workspace.objects.for_user(user, "view").filter(slug=workspace).first()
    version = queries.visible_version(user, digest) if ws else None
    if ws is None or version is None:
        raise Http404("no such artifact version")
    links = queries.version_links(user, digest)
    runs = {link.run.pk: link.run for link in links}
    for link in links:
        if link.role == "output":  # the producers' own data, back along the chain
            for pk, run in queries.chain(user, link.run).runs.items():
                runs.setdefault(pk, run)
    ordered = sorted(runs.values(), key=lambda r: (r.project.workspace.slug, r.project.slug, r.number))
    exportable = [r for r in ordered if permissions.can(user, "export", r.project)][:MAX_RUNS]
    left_out = [
        {"id": r.human_id, "project": f"{r.project.workspace.slug}/{r.project.slug}", "why": "no export right"}
        for r in ordered
        if r not in exportable
    ]
    fd, path = tempfile.mkstemp(suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            rows = exports.write_runs(archive, exportable, nested=True)
            exports.dump_json(
                archive,
                "manifest.json",
                {
                    "format": exports.FORMAT_VERSION,
                    "version": {
                        "hash": version.hash,
                        "name": version.artifact.name if version.artifact_id and version.artifact else None,
                        "size": version.size,
                        "file_count": version.file_count,
                        "files": version.files,
                        "first_seen": version.first_seen.isoformat() if version.first_seen else None,
                    },
                    "consumed_by": [queries.link_json(link, with_run=True) for link in links if link.role == "input"],
                    "produced_by": [queries.link_json(link, with_run=True) for link in links if link.role == "output"],
                    "exported_at": timezone.now().isoformat(),
                    "exported_by": user.get_username(),
                    "runs": rows,
                    "left_out": left_out,
                },
            )
    except BaseException:
        os.unlink(path)
        raise
    for project in {r.project for r in exportable}:
        audit.record(
            "export.lineage",
            actor=user,
            project=project,
            target=f"lineage of {version.hash[:12]}",
            details={"hash": version.hash, "runs": [r.human_id for r in exportable if r.project == project]},
        )
    return _Closing(path), f"{workspace}-lineage-{version.hash[:12]}.zip"


def response(user, workspace: str, digest: str) -> FileResponse:
    archive, name = build(user, workspace, digest)
    return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")


class ArtifactLineageRecordView(ScopedUIViewMixin, View):
    def scoped_queryset(self):
        return queries.visible_links(self.request.user)

    def get(self, request, workspace, digest):
        return response(request.user, workspace, digest)
