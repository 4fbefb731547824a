import csv
import io
import mimetypes
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.clickjacking import xframe_options_sameorigin

from ..downloads import ranged_response
from ..models import Attribute, AttributeType, FileEntry
from ..paths import entry_file_name
from ..storage import open_blob
from .base import ProjectScopedMixin, _int_param

PREVIEW_TEXT_BYTES = 512 * 1024
CSV_PREVIEW_ROWS = 50
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml", "image/bmp"}
CODE_EXTENSIONS = {
    ".py",
    ".yaml",
    ".yml",
    ".json",
    ".toml",
    ".cfg",
    ".ini",
    ".sh",
    ".txt",
    ".md",
    ".js",
    ".ts",
    ".c",
    ".h",
    ".cpp",
    ".rs",
    ".go",
    ".java",
    ".sql",
    ".r",
    ".jl",
    ".log",
    ".xml",
    ".css",
    ".rst",
    ".diff",
    ".patch",
}


def _file_entry(run, request) -> FileEntry:
    attr = get_object_or_404(
        Attribute,
        run=run,
        path=request.GET.get("path", ""),
        type__in=[AttributeType.FILE, AttributeType.FILE_SET, AttributeType.FILE_SERIES],
    )
    entries = FileEntry.objects.filter(attribute=attr).select_related("blob")
    if attr.type == AttributeType.FILE_SET:
        entries = entries.filter(relpath=request.GET.get("relpath", ""))
    elif attr.type == AttributeType.FILE_SERIES:
        entries = entries.filter(step=_int_param(request, "step", 0))
    entry = entries.first()
    if entry is None:
        raise Http404("no such file")
    entry.attribute = attr
    return entry


def _entry_name(entry) -> str:
    return entry_file_name(entry, entry.attribute.path)


# Files served inline: the sandbox makes an HTML report a unique opaque origin (its scripts cannot
# read Runstore's cookies, DOM or API), and only Runstore's own pages may frame it.
RAW_FILE_CSP = "sandbox; frame-ancestors 'self'"


@method_decorator(xframe_options_sameorigin, name="dispatch")
class RunFileRawView(ProjectScopedMixin, View):
    """A file served inline for previews (images, video, HTML reports in the run page's sandboxed
    iframe), always under ``CSP: sandbox``; framed by Runstore's pages only (``SAMEORIGIN``)."""

    def get(self, request, workspace, project, run_id):
        entry = _file_entry(self.get_run(run_id), request)
        content_type = entry.mime_type
        if content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(_entry_name(entry))[0] or content_type
        return ranged_response(
            request,
            open_blob(entry.blob.storage_key),
            size=entry.size,
            content_type=content_type,
            filename=_entry_name(entry),
            inline=True,
            csp=RAW_FILE_CSP,
        )


def _preview_kind(name: str, mime: str, size: int) -> str:
    lower = name.lower()
    ext = "." + lower.rsplit(".", 1)[-1] if "." in lower else ""
    if mime in IMAGE_TYPES or ext in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp"):
        return "image"
    if mime.startswith("video/") or ext in (".mp4", ".webm", ".ogv", ".mov"):
        return "video"
    if mime.startswith("audio/") or ext in (".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac", ".opus"):
        return "audio"
    if ext in (".html", ".htm") or mime == "text/html":
        return "html"
    if ext == ".ipynb":
        return "notebook"
    if ext in (".csv", ".tsv") or mime == "text/csv":
        return "csv"
    if size <= PREVIEW_TEXT_BYTES and (
        ext in CODE_EXTENSIONS or mime.startswith("text/") or mime in ("application/json", "application/x-yaml")
    ):
        return "code"
    return "none"


class RunFilePreviewView(ProjectScopedMixin, View):
    """An in-page preview of one file: image, video, sandboxed HTML, CSV table or highlighted source."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        entry = _file_entry(run, request)
        name = _entry_name(entry)
        kind = _preview_kind(name, entry.mime_type, entry.size)
        query = {"path": entry.attribute.path}
        if entry.relpath:
            query["relpath"] = entry.relpath
        if entry.step is not None:
            query["step"] = entry.step
        base = reverse("runs:run_detail", args=[workspace, project, run_id])
        context = {
            "run": run,
            "project": self.get_project(),
            "entry": entry,
            "name": name,
            "kind": kind,
            "raw_url": f"{base}raw?{urlencode(query)}",
            "download_url": reverse("run-file-download", kwargs={"run_ref": str(run.uuid)}) + f"?{urlencode(query)}",
        }
        from .. import processing
        from ..models import BlobInfo, BlobPreview

        visible = processing.processed_for(entry.blob_id, run.project_id)  # nothing learnt from other projects' uploads
        failure = (
            BlobInfo.objects.filter(blob_id=entry.blob_id).values_list("preview_error", flat=True).first()
            if visible
            else None
        )
        if failure and kind in ("image", "notebook", "video"):
            # processing refused the file or could not read it (runs.processing): it is offered for download only
            context["preview_error"] = failure
        elif kind in ("notebook", "video"):
            # the notebook's HTML and the video's poster frame are made by the blob-processing task
            # (runs.processing) and served by the API (HTML sandboxed)
            preview = "html" if kind == "notebook" else "poster"
            if visible and BlobPreview.objects.filter(blob=entry.blob, kind=preview).exists():
                url = (
                    reverse("run-file-preview", kwargs={"run_ref": str(run.uuid)})
                    + f"?{urlencode({**query, 'kind': preview})}"
                )
                context["notebook_url" if kind == "notebook" else "poster_url"] = url
        elif kind == "csv":
            context["csv_rows"], context["csv_more"] = _csv_rows(
                entry, delimiter="\t" if name.lower().endswith(".tsv") else ","
            )
        elif kind == "code":
            context["code_html"] = _highlight(entry, name)
        return TemplateResponse(request, "runs/run_detail.html#preview", context)


def _csv_rows(entry, delimiter=","):
    rows, more = [], False
    with open_blob(entry.blob.storage_key) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        for index, row in enumerate(csv.reader(text, delimiter=delimiter)):
            if index > CSV_PREVIEW_ROWS:
                more = True
                break
            rows.append(row[:50])
    return rows, more


def _highlight(entry, name: str):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, guess_lexer_for_filename
    from pygments.util import ClassNotFound

    with open_blob(entry.blob.storage_key) as raw:
        source = raw.read(PREVIEW_TEXT_BYTES).decode("utf-8", errors="replace")
    try:
        lexer = guess_lexer_for_filename(name, source)
    except ClassNotFound:
        lexer = TextLexer()
    from django.utils.safestring import mark_safe

    return mark_safe(highlight(source, lexer, HtmlFormatter(nowrap=False, cssclass="highlight")))  # noqa: S308 (Pygments escapes)
