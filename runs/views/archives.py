"""A file set (a model directory, a checkpoint) downloaded as one ZIP archive, streamed as it is built:
nothing is staged on disk or held whole in memory, so a multi-gigabyte model starts at once."""

import zipfile

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from django.views import View

from ..models import Attribute, AttributeType, FileEntry
from ..paths import safe_file_name, safe_relpath
from ..storage import CHUNK, open_blob
from .base import ProjectScopedMixin


class _Sink:
    """A write-only stream zipfile writes into; what it holds is handed out and dropped chunk by chunk.
    It has no ``tell``/``seek``, so zipfile writes data descriptors instead of seeking back."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_zip(entries, root: str):
    """The bytes of a ZIP archive of ``entries`` (FileEntry with blob), each under ``root/relpath``."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:  # type: ignore[call-overload]  # a write-only stream is what zipfile asks of a non-seekable target
        seen: set[str] = set()
        for entry in entries:
            name = f"{root}/{safe_relpath(entry.relpath) or safe_file_name(entry.name, fallback='file')}"
            if name in seen:  # two stored relpaths that normalise alike: keep both
                name = f"{name}.{entry.pk}"
            seen.add(name)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as out, open_blob(entry.blob.storage_key) as stream:
                while data := stream.read(CHUNK):
                    out.write(data)
                    if sum(len(p) for p in sink.parts) >= CHUNK:
                        yield sink.take()
            yield sink.take()
    yield sink.take()


class RunFileSetZipView(ProjectScopedMixin, View):
    """``?path=`` a file set field of the run: all its files as ``<field>.zip``, streamed."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        attr = get_object_or_404(Attribute, run=run, path=request.GET.get("path", ""), type=AttributeType.FILE_SET)
        entries = (
            FileEntry.objects.filter(attribute=attr, step__isnull=True)
            .select_related("blob")
            .order_by("relpath")
            .iterator(chunk_size=500)
        )
        root = safe_file_name(f"{run.human_id}-{attr.path.replace('/', '-')}", fallback=run.human_id)
        response = StreamingHttpResponse(stream_zip(entries, root), content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(True, f"{root}.zip")
        response["X-Content-Type-Options"] = "nosniff"
        return response
